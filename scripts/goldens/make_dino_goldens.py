"""Goldens for elect's DINO structure distance (tests/Elect.Tests/Data/dino-tiny/ and dino-tiny-golden.safetensors):
a tiny random transformers ViTModel (facebook/dino-vitb8 layout), the keys of its last layer taken with a forward hook
on transformers 5's own key projection (`layers[l].attention.k_proj`, saved as the Hub's `encoder.layer.l.attention.attention.key`) (DINO's blocks[l].attn.qkv key third), and PnPInversion's structure distance
re-expressed line by line (evaluation/matrics_calculator.py calculate_structure_distance -> LossG
calculate_global_ssim_loss: images as float 0..255 times the mask, torchvision Resize(size, max_size=480) +
Normalize(ImageNet) on them, VitExtractor.get_keys_self_sim_from_input, attn_cosine_sim, F.mse_loss).

Run: ../shared/reference/py scripts/goldens/make_dino_goldens.py tests/Elect.Tests/Data/dino-tiny
"""
import os
import sys
import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms
from safetensors.torch import save_file
from transformers import ViTConfig, ViTModel


def attn_cosine_sim(x, eps=1e-08):
    x = x[0]
    norm1 = x.norm(dim=2, keepdim=True)
    factor = torch.clamp(norm1 @ norm1.permute(0, 2, 1), min=eps)
    return (x @ x.permute(0, 2, 1)) / factor


def main(out):
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=48, intermediate_size=96, num_attention_heads=4, num_hidden_layers=3, image_size=32, patch_size=8,
                    add_pooling_layer=False)
    model = ViTModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float() if p.dim() > 0 else p)
            if p.dim() == 3:
                p.copy_(torch.randn_like(p).half().float() * 0.5)   # cls token / positions: not all zero
    model.save_pretrained(out, safe_serialization=True)
    layer = cfg.num_hidden_layers - 1
    heads, dim = cfg.num_attention_heads, cfg.hidden_size
    transform = transforms.Compose([transforms.Resize(cfg.image_size, max_size=480),
                                    transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])

    def self_sim(img):
        captured = {}
        h = model.layers[layer].attention.k_proj.register_forward_hook(lambda m, i, o: captured.setdefault("k", o))
        with torch.no_grad():
            model(pixel_values=img)
        h.remove()
        k = captured["k"]
        patch_num = k.shape[1]
        keys = k.reshape(patch_num, heads, dim // heads).permute(1, 0, 2)   # the key third of qkv, [heads, tokens, d]
        hh, t, d = keys.shape
        concatenated_keys = keys.transpose(0, 1).reshape(t, hh * d)
        return attn_cosine_sim(concatenated_keys[None, None, ...])

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:64, 0:64]
    src = np.clip(np.stack([xx * 4, yy * 3, (xx * yy) % 256], 2) + rng.normal(0, 10, (64, 64, 3)), 0, 255).round().astype(np.uint8)
    tgt = np.clip(src.astype(np.float64) + rng.normal(0, 40, (64, 64, 3)), 0, 255).round().astype(np.uint8)
    mask = np.zeros((64, 64, 3), np.float32)
    mask[10:30, 5:60] = 1
    tensors = {"src": torch.tensor(src), "tgt": torch.tensor(tgt), "mask": torch.tensor(mask[:, :, 0].copy())}
    for name, m in (("whole", None), ("unedit", 1 - mask)):
        a, b = src.astype(np.float32), tgt.astype(np.float32)
        if m is not None:
            a, b = a * m, b * m
        a = torch.from_numpy(np.transpose(a, axes=(2, 0, 1))).unsqueeze(0)
        b = torch.from_numpy(np.transpose(b, axes=(2, 0, 1))).unsqueeze(0)
        # calculate_global_ssim_loss(outputs=img_gt(tgt), inputs=img_pred(src))
        loss = 0.0
        for x_in, x_out in zip(a, b):
            target_keys_self_sim = self_sim(transform(x_in).unsqueeze(0))
            keys_ssim = self_sim(transform(x_out).unsqueeze(0))
            loss += F.mse_loss(keys_ssim, target_keys_self_sim)
        tensors[f"sd.{name}"] = torch.tensor([float(loss)], dtype=torch.float64)
        print(name, float(loss))
    save_file(tensors, os.path.join(os.path.dirname(os.path.abspath(out)), "dino-tiny-golden.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])

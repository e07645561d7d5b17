"""Goldens for elect's MagicBrush test-set metrics (tests/Elect.Tests/Data/magicbrush/): OSU-NLP-Group/MagicBrush
evaluation/image_eval.py's L1, L2, CLIP-I, CLIP-T (+ oracle) and DINO on fixed synthetic image pairs (non-square,
of different sizes, so that every resize matters), with tiny random models:

* clip-b32/: a transformers CLIPModel in the openai/clip-vit-base-patch32 layout (image_size 224, patch 32), weights
  rounded to float16 and stored so. image_eval.py uses the openai `clip` package (`clip.load("ViT-B/32")`), which is
  not installed in the reference chroot; its `preprocess` is re-expressed with torchvision exactly as clip/clip.py
  `_transform(n_px)` builds it (Resize(n_px, BICUBIC), CenterCrop(n_px), convert RGB, ToTensor, Normalize(CLIP mean,
  std)), `encode_image` / `encode_text` are transformers' get_image_features / get_text_features of the same weights
  (the Hub's conversion: class token after ln_post @ proj; EOT token after ln_final @ text_projection), and
  `clip.tokenize` is [SOT] + the CLIP BPE (transformers' CLIPTokenizer, the shared fixtures' real CLIP vocabulary) +
  [EOT], zero-padded to 77 as clip.tokenize pads.
* dino-s16/: a transformers ViTModel in the facebook/dino-vits16 layout (image_size 224, patch 16, the Hub config's
  layer_norm_eps 1e-12). image_eval.py uses torch.hub's `dino_vits16` (facebookresearch/dino vision_transformer.py),
  not available offline; its forward is re-expressed below (`dino_forward`: patch conv, CLS, interpolate_pos_encoding
  (the identity at 224), blocks with a fused qkv and LayerNorm eps 1e-6, final norm, x[:, 0]) on the same weights.
  transformers' ViTModel with the Hub config (eps 1e-12) is also run and its difference printed.
* L1/L2: the reference's lines (`gen.resize(gt.size)` with Pillow's default filter, ToTensor, nn.L1Loss / MSELoss).
* cosines: 1 - scipy.spatial.distance.cosine, as the reference.
* Pillow: the chroot has Pillow 13, whose Image.resize may run the vertical pass before the horizontal one (e.g.
  97x131 -> 64x64), which changes the 8-bit intermediate; Pillow 7..12 (the reference's: MagicBrush's environment is
  Python 3.8, so Pillow <= 10.4) always resize horizontally first. `Image.Image.resize` is therefore patched below to
  compose two single-axis resizes, horizontal then vertical, which is Pillow 12's two-pass resize exactly (checked
  against a hash made with Pillow 9.4 in tests/Elect.Tests/ImagingTests.cs). torchvision's Resize calls it too.

Run: REF_MOUNTS=/work/shared ../shared/reference/py scripts/goldens/make_magicbrush_goldens.py ../shared/fixtures/models/ip2p-tiny/tokenizer tests/Elect.Tests/Data/magicbrush
"""
import hashlib
import os
import sys
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import spatial
from safetensors.torch import save_file, load_file
from torch import nn
from torchvision import transforms
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, ViTConfig, ViTModel

_pillow_resize = Image.Image.resize


def _resize_horizontal_first(self, size, resample=None, box=None, reducing_gap=None):
    size = tuple(size)
    if box is None and reducing_gap is None and self.mode not in ("1", "P") and size[0] != self.size[0] and size[1] != self.size[1]:
        return _pillow_resize(_pillow_resize(self, (size[0], self.size[1]), resample), size, resample)
    return _pillow_resize(self, size, resample, box, reducing_gap)


Image.Image.resize = _resize_horizontal_first

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_transform(n_px):   # clip/clip.py _transform
    return transforms.Compose([
        transforms.Resize(n_px, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(n_px),
        lambda image: image.convert("RGB"),
        transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ])


DINO_TRANSFORM = transforms.Compose([   # image_eval.py, metric 'dino'
    transforms.Resize(256, interpolation=3),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
])


def clip_tokenize(tokenizer, text, context_length=77):
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(ids) > context_length:
        raise RuntimeError(f"Input {text} is too long for context length {context_length}")
    result = torch.zeros(1, context_length, dtype=torch.long)
    result[0, :len(ids)] = torch.tensor(ids)
    return result


def dino_forward(sd, cfg, x, eps=1e-6):
    """facebookresearch/dino VisionTransformer.forward on the Hub-named weights of a ViTModel."""
    B, nc, w, h = x.shape
    D, H = cfg.hidden_size, cfg.num_attention_heads
    t = F.conv2d(x, sd["embeddings.patch_embeddings.projection.weight"], sd["embeddings.patch_embeddings.projection.bias"],
                 stride=cfg.patch_size).flatten(2).transpose(1, 2)
    t = torch.cat((sd["embeddings.cls_token"].expand(B, -1, -1), t), dim=1)
    pos = sd["embeddings.position_embeddings"]
    assert t.shape[1] - 1 == pos.shape[1] - 1 and w == h, "interpolate_pos_encoding is the identity only at the model's size"
    t = t + pos
    for l in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{l}."
        y = F.layer_norm(t, (D,), sd[p + "layernorm_before.weight"], sd[p + "layernorm_before.bias"], eps)
        wqkv = torch.cat([sd[p + f"attention.attention.{n}.weight"] for n in ("query", "key", "value")])
        bqkv = torch.cat([sd[p + f"attention.attention.{n}.bias"] for n in ("query", "key", "value")])
        N = y.shape[1]
        qkv = F.linear(y, wqkv, bqkv).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (D // H) ** -0.5).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, N, D)
        t = t + F.linear(y, sd[p + "attention.output.dense.weight"], sd[p + "attention.output.dense.bias"])
        y = F.layer_norm(t, (D,), sd[p + "layernorm_after.weight"], sd[p + "layernorm_after.bias"], eps)
        y = F.linear(F.gelu(F.linear(y, sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"])),
                     sd[p + "output.dense.weight"], sd[p + "output.dense.bias"])
        t = t + y
    t = F.layer_norm(t, (D,), sd["layernorm.weight"], sd["layernorm.bias"], eps)
    return t[:, 0]


def synth(w, h, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    f = 3 + seed % 5
    img = np.stack([xx * 255 / w, yy * 255 / h, ((xx // f + yy // (f + 2)) % 2) * 200 + 20], 2)[:, :, rng.permutation(3)]
    img = img * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 30, (h, w, 3))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def sha(a):
    return torch.tensor(np.frombuffer(hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest(), np.uint8).copy())


def main(tokenizer_dir, out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    ccfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=4, intermediate_size=8, num_attention_heads=1, num_hidden_layers=2,
                         max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, image_size=224,
                           patch_size=32, hidden_act="quick_gelu"),
        projection_dim=8)
    clip = CLIPModel(ccfg).eval()
    with torch.no_grad():
        for p in clip.parameters():
            p.copy_(p.half().float())
        # large patch weights, so that the image content, not the class token, dominates the tiny towers' embeddings
        clip.vision_model.embeddings.patch_embedding.weight.mul_(8)
        for p in clip.parameters():
            p.copy_(p.half().float())
    clip.half().save_pretrained(os.path.join(out, "clip-b32"), safe_serialization=True)
    clip.float()
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)

    vcfg = ViTConfig(hidden_size=24, intermediate_size=48, num_attention_heads=2, num_hidden_layers=2, image_size=224, patch_size=16,
                     layer_norm_eps=1e-12)
    vit = ViTModel(vcfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in vit.parameters():
            if p.dim() == 3:
                p.copy_(torch.randn_like(p) * 0.1)   # cls token / positions: not all zero
            if p.dim() == 1 and p.shape[0] == 24 and float(p.abs().sum()) in (0.0, 24.0):   # layer norms: not the identity
                p.add_(torch.randn_like(p) * 0.2)
        vit.embeddings.patch_embeddings.projection.weight.mul_(8)
        for layer in vit.layers:   # peaked attention, so that the class token sees particular patches, not their mean (transformers 5 names)
            layer.attention.q_proj.weight.mul_(6)
            layer.attention.k_proj.weight.mul_(6)
        for p in vit.parameters():
            p.copy_(p.half().float())
    vit.half().save_pretrained(os.path.join(out, "dino-s16"), safe_serialization=True)
    vit.float()
    sd = {k: v.float() for k, v in load_file(os.path.join(out, "dino-s16", "model.safetensors")).items()}
    sd = {k[4:] if k.startswith("vit.") else k: v for k, v in sd.items()}

    pairs = [((150, 100), (128, 96)), ((97, 131), (120, 90)), ((64, 64), (64, 64)), ((150, 85), (129, 150))]
    captions = ["a red house with a garden", "two dogs playing in the snow, next to a bright yellow fire hydrant",
                "a bowl of fruit", "Remove the CAT & add a hat!"]
    clip_pre = clip_transform(ccfg.vision_config.image_size)
    tensors = {}
    with torch.no_grad():
        for i, ((gw, gh), (tw, th)) in enumerate(pairs):
            gen = synth(gw, gh, 10 + i)
            gt = synth(tw, th, 20 + i) if (gw, gh) != (tw, th) else np.clip(gen.astype(np.int32) + synth(tw, th, 30 + i) // 4 - 32, 0, 255).astype(np.uint8)
            tensors[f"p{i}.gen"] = torch.tensor(gen)
            tensors[f"p{i}.gt"] = torch.tensor(gt)
            gen_img = Image.fromarray(gen).convert("RGB")
            gt_img = Image.fromarray(gt).convert("RGB")
            # eval_distance
            resized = gen_img.resize(gt_img.size)
            tensors[f"p{i}.resized_sha"] = sha(np.array(resized))
            g, t = transforms.ToTensor()(resized), transforms.ToTensor()(gt_img)
            tensors[f"p{i}.l1"] = torch.tensor([nn.L1Loss()(g, t).item()], dtype=torch.float64)
            tensors[f"p{i}.l2"] = torch.tensor([nn.MSELoss()(g, t).item()], dtype=torch.float64)
            feats = {}
            for name, img in (("gen", gen_img), ("gt", gt_img)):
                # the preprocessing: the uint8 crop (hash) and the normalised tensor (every 16th row and column)
                n = ccfg.vision_config.image_size
                crop = transforms.CenterCrop(n)(transforms.Resize(n, interpolation=transforms.InterpolationMode.BICUBIC)(img))
                tensors[f"p{i}.{name}.clip_crop_sha"] = sha(np.array(crop))
                x = clip_pre(img)
                tensors[f"p{i}.{name}.clip_pixels_sub"] = x[:, ::16, ::16].contiguous()
                dcrop = transforms.CenterCrop(224)(transforms.Resize(256, interpolation=3)(img))
                tensors[f"p{i}.{name}.dino_crop_sha"] = sha(np.array(dcrop))
                y = DINO_TRANSFORM(img)
                tensors[f"p{i}.{name}.dino_pixels_sub"] = y[:, ::16, ::16].contiguous()
                fc = clip.get_image_features(pixel_values=x.unsqueeze(0))
                fc = getattr(fc, "pooler_output", fc).float()
                fd = dino_forward(sd, vcfg, y.unsqueeze(0)).float()
                hf = vit(pixel_values=y.unsqueeze(0)).last_hidden_state[:, 0]
                print(f"pair {i} {name}: DINO eps 1e-6 vs the HF config's 1e-12: max |diff| {float((hf - fd).abs().max()):.3g}")
                feats[name] = (fc, fd)
                tensors[f"p{i}.{name}.clip_features"] = fc[0].contiguous()
                tensors[f"p{i}.{name}.dino_features"] = fd[0].contiguous()
            cos = lambda a, b: 1 - spatial.distance.cosine(a.view(a.shape[1]), b.view(b.shape[1]))
            tensors[f"p{i}.clip-i"] = torch.tensor([cos(feats["gen"][0], feats["gt"][0])], dtype=torch.float64)
            tensors[f"p{i}.dino"] = torch.tensor([cos(feats["gen"][1], feats["gt"][1])], dtype=torch.float64)
            ids = clip_tokenize(tokenizer, captions[i])
            tensors[f"p{i}.token_ids"] = ids[0][ids[0] != 0].contiguous()
            tf = clip.get_text_features(input_ids=ids)
            tf = getattr(tf, "pooler_output", tf).float()
            tensors[f"p{i}.text_features"] = tf[0].contiguous()
            tensors[f"p{i}.clip-t"] = torch.tensor([cos(feats["gen"][0], tf)], dtype=torch.float64)
            tensors[f"p{i}.clip-t_oracle"] = torch.tensor([cos(feats["gt"][0], tf)], dtype=torch.float64)
            print(i, {k.split(".", 1)[1]: float(v[0]) for k, v in tensors.items() if k.startswith(f"p{i}.") and v.dtype == torch.float64})
    with open(os.path.join(out, "captions.txt"), "w") as f:
        f.write("\n".join(captions) + "\n")
    save_file(tensors, os.path.join(out, "magicbrush-golden.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

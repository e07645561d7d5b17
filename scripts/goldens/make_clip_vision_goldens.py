"""Goldens for elect's CLIP vision tower and CLIP score (tests/Elect.Tests/Data/clip-tiny/, and
clip-tiny-golden.safetensors beside it): a tiny random transformers CLIPModel in the openai/clip-vit-large-patch14
layout (config.json with vision_config/text_config, model.safetensors; weights rounded to float16 and stored so),
its vision outputs on fixed pixel values, and torchmetrics' CLIPScore formula re-expressed line by line
(torchmetrics is not installed in the reference chroot: functional/multimodal/clip_score.py `_get_features` +
`_clip_score_update`: CLIPProcessor(text, images=[uint8 CHW tensor], padding=True), L2-normalised features,
100 * cosine, clamped at 0) with transformers 5's CLIPImageProcessor (torchvision backend) and the CLIP tokenizer of
the shared fixtures (its vocabulary is the real CLIP BPE).

Run: REF_MOUNTS=/work/shared ../shared/reference/py scripts/goldens/make_clip_vision_goldens.py ../shared/fixtures/models/ip2p-tiny/tokenizer tests/Elect.Tests/Data/clip-tiny
"""
import os
import sys
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPImageProcessor, CLIPTokenizer


def main(tokenizer_dir, out):
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                         max_position_embeddings=77),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_attention_heads=4, num_hidden_layers=3, image_size=32,
                           patch_size=8, hidden_act="quick_gelu"),
        projection_dim=24)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.half().save_pretrained(out, safe_serialization=True)
    model.float()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tensors = {}
    with torch.no_grad():
        vo = model.vision_model(pixel_values=pixels, output_hidden_states=True)
        embeds = model.visual_projection(vo.pooler_output)
        tensors.update({
            "pixel_values": pixels,
            "last_hidden_state": vo.last_hidden_state.contiguous(),
            "penultimate": vo.hidden_states[-2].contiguous(),
            "pooled": vo.pooler_output.contiguous(),
            "image_embeds": embeds.contiguous(),
        })
        processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                                  tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir))
        rng = np.random.default_rng(3)
        yy, xx = np.mgrid[0:96, 0:80]
        img = np.clip(np.stack([xx * 3, yy * 2, (xx + yy) % 256], 2) + rng.normal(0, 25, (96, 80, 3)), 0, 255).round().astype(np.uint8)
        tensors["score_image"] = torch.tensor(img)
        for k, text in enumerate(["a red house with a garden", "a photo of a cat"]):
            images = [torch.tensor(img).permute(2, 0, 1)]
            processed_input = processor(text=[text], images=[i.cpu() for i in images], return_tensors="pt", padding=True)
            img_features = model.visual_projection(model.vision_model(pixel_values=processed_input["pixel_values"]).pooler_output)
            img_features = img_features / img_features.norm(p=2, dim=-1, keepdim=True)
            txt_features = model.text_projection(model.text_model(input_ids=processed_input["input_ids"],
                                                                  attention_mask=processed_input["attention_mask"]).pooler_output)
            txt_features = txt_features / txt_features.norm(p=2, dim=-1, keepdim=True)
            score = 100 * (img_features * txt_features).sum(axis=-1)
            score = torch.max(score.sum() / 1, torch.zeros_like(score.sum()))
            tensors[f"score{k}"] = score.reshape(1).double()
            tensors[f"score{k}.pixel_values"] = processed_input["pixel_values"].contiguous()
            tensors[f"score{k}.input_ids"] = processed_input["input_ids"].contiguous()
            # the raw cosine too, so that a clamp at 0 does not hide a mismatch
            tensors[f"cos{k}"] = (img_features * txt_features).sum().reshape(1).double()
            print(text, float(score), float(tensors[f"cos{k}"]))
    save_file(tensors, os.path.join(os.path.dirname(os.path.abspath(out)), "clip-tiny-golden.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

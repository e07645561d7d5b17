"""Goldens for elect's CLIP vision tower (tests/Elect.Tests/Data/clip-tiny/ and clip-tiny-vision-golden.safetensors beside it): a tiny random transformers CLIPModel
(the openai/clip-vit-large-patch14 layout: config.json with vision_config/text_config, model.safetensors) and its
vision outputs on fixed pixel values.

Run: ../shared/reference/py scripts/goldens/make_clip_vision_goldens.py tests/Elect.Tests/Data/clip-tiny
"""
import os
import sys
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel


def main(out):
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=77),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_attention_heads=4, num_hidden_layers=3, image_size=32,
                           patch_size=8, hidden_act="quick_gelu"),
        projection_dim=24)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        vo = model.vision_model(pixel_values=pixels, output_hidden_states=True)
        embeds = model.visual_projection(vo.pooler_output)
    save_file({
        "pixel_values": pixels,
        "last_hidden_state": vo.last_hidden_state.contiguous(),
        "penultimate": vo.hidden_states[-2].contiguous(),
        "pooled": vo.pooler_output.contiguous(),
        "image_embeds": embeds.contiguous(),
    }, os.path.join(os.path.dirname(os.path.abspath(out)), "clip-tiny-vision-golden.safetensors"))
    print(embeds)


if __name__ == "__main__":
    main(sys.argv[1])

"""Published-size goldens for MGIE's multimodal LLM (MgieLlavaPublishedSizeTests in tests/Elect.Tests/MgieLlavaTests.cs):
LLaVA-7B-v1's LLaMA (tests/Elect.Tests/Data/published-configs/llava-7b-v1/config.json: width 4096, 32 heads x 128,
SwiGLU 11008, vocab 32003, + model.mm_projector 1024 -> 4096) cut to 2 decoder layers, and the openai/clip-vit-large-patch14
vision tower (published-configs/clip-vit-large-patch14/config.json: 1024 wide, 16 heads, 224 px / patch 14 = 256 patches)
cut to 3 layers, filled with published_sizes.py's deterministic weights (the C# twin: SeededInit), on transformers 5.12's
LlamaForCausalLM / CLIPVisionModel. Outputs: logits and hidden_states of 12 token ids (strided), mm_projector of random
features, and the vision tower's hidden_states[-2][:, 1:] (MGIE's mm_vision_select_layer) of random pixels.

Run: /work/shared/reference/py scripts/goldens/mgie_published_sizes.py tests/Elect.Tests/Data/published-sizes
"""
import json
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from published_sizes import CONFIGS, fill, strided  # noqa: E402

LLAMA_LAYERS, VISION_LAYERS = 2, 3


def llama(seed):
    with open(os.path.join(CONFIGS, "llava-7b-v1", "config.json")) as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = LLAMA_LAYERS
    keep = ["bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "hidden_size", "intermediate_size",
            "max_position_embeddings", "num_attention_heads", "num_hidden_layers", "rms_norm_eps", "vocab_size",
            "tie_word_embeddings"]
    m = LlamaForCausalLM(LlamaConfig(**{k: cfg[k] for k in keep})).float().eval()
    m.model.mm_projector = nn.Linear(cfg["mm_hidden_size"], cfg["hidden_size"])   # LLaVA's, under model.
    meta = fill(m, seed)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, cfg["vocab_size"], (1, 12), generator=g)
    features = torch.randn((1, 4, cfg["mm_hidden_size"]), generator=g)
    with torch.no_grad():
        o = m(input_ids=ids, output_hidden_states=True, use_cache=False)
        proj = m.model.mm_projector(features)
    res = {"input_ids": ids, "logits": strided(o.logits[0], 4), "logits_last": o.logits[0, -1].contiguous(),
           "features": features, "projected": strided(proj, 8)}
    for i, h in enumerate(o.hidden_states):
        res[f"hidden_states.{i}"] = strided(h[0], 8)
    meta["layers"] = str(LLAMA_LAYERS)
    return res, meta


def vision(seed):
    with open(os.path.join(CONFIGS, "clip-vit-large-patch14", "config.json")) as f:
        full = json.load(f)
    vc = full["vision_config"]
    vc["num_hidden_layers"] = VISION_LAYERS
    vc["projection_dim"] = full["projection_dim"]
    # CLIPVisionModel as MGIE loads it, plus the (unused) visual_projection, so the parameter names are elect's ClipVisionModel's
    m = CLIPVisionModelWithProjection(CLIPVisionConfig(**vc)).float().eval()
    meta = fill(m, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn((1, 3, 224, 224), generator=g)
    with torch.no_grad():
        o = m(pixel_values=pixels, output_hidden_states=True)
    meta["layers"] = str(VISION_LAYERS)
    return {"select": strided(o.hidden_states[-2][:, 1:], 8), "embeddings": strided(o.hidden_states[0], 8)}, meta


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    for name, fn in [("llava-7b-v1-llama", lambda: llama(1101)), ("clip-vit-large-patch14-vision", lambda: vision(1102))]:
        tensors, meta = fn()
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(out, f"{name}.safetensors"), metadata=meta)
        print(name, meta["params_count"], {k: tuple(v.shape) for k, v in tensors.items()}, flush=True)


if __name__ == "__main__":
    main()

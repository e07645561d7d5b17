"""Tiny UltraEdit components (SD3 transformer, T5 encoder) saved by save_pretrained as PyTorch .bin
and as safetensors, so the tests prove both loaders read .bin weights exactly like safetensors.

    REF_PYTHONPATH=/tmp/refsrc/diffusers/src ../shared/reference/py scripts/goldens/make_bin_components.py tests/Elect.Tests/Data/bin-components

Random weights from torch.manual_seed(0); nothing here comes from a published checkpoint.
"""
import os, shutil, sys
import torch
from diffusers import SD3Transformer2DModel
from transformers import T5Config, T5EncoderModel

out = sys.argv[1]
torch.manual_seed(0)
sd3 = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=8, num_layers=1, attention_head_dim=8,
                            num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
                            pooled_projection_dim=8, out_channels=4, pos_embed_max_size=8)
t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=24, num_layers=1, num_heads=2,
                             feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                             relative_attention_max_distance=16, tie_word_embeddings=True))
for name, model in (("transformer", sd3), ("text_encoder_3", t5)):
    for fmt in ("torch-bin", "safetensors"):
        d = os.path.join(out, name, fmt)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        if fmt == "torch-bin":
            # transformers 5 writes only safetensors; a .bin is torch.save(state_dict) as transformers 4 wrote it
            # (T5's tied shared / encoder.embed_tokens weights both stored, sharing one storage)
            for f in os.listdir(d):
                if f.endswith(".safetensors"):
                    os.remove(os.path.join(d, f))
            weights = "diffusion_pytorch_model.bin" if name == "transformer" else "pytorch_model.bin"
            if not os.path.exists(os.path.join(d, weights)):
                torch.save(model.state_dict(), os.path.join(d, weights))
        print(d, sorted(os.listdir(d)))

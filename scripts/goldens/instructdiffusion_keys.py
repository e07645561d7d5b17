"""The full-size (SD 1.5) key map of an InstructDiffusion checkpoint, from reference code only.

LDM names and shapes come from InstructDiffusion's own modules built (on the meta device, no
memory) from its configs/instruct_diffusion.yaml; the diffusers name each of them gets comes from
diffusers' single-file conversion (loaders/single_file_utils.py: create_*_diffusers_config_from_ldm,
convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint), traced by
giving every tensor a distinct value. The port's own mapping (src/Elect/Pipelines/InstructDiffusion/LdmKeys.cs)
is checked against this list at full size without building the 1B-parameter model.

Run (from the repository root):
  REF_PYTHONPATH=/tmp/refsrc/idiff/stable_diffusion:/tmp/refsrc/diffusers/src \
    /work/shared/reference/py scripts/goldens/instructdiffusion_keys.py /tmp/refsrc/idiff/configs/instruct_diffusion.yaml \
    tests/Elect.Tests/Data/instructdiffusion-tiny/sd15-keymap.txt
"""
import importlib.machinery
import sys
import types

from transformers import CLIPTextConfig, CLIPTextModel  # before the torchvision stub (transformers probes for it)
import transformers.models.clip.modeling_clip  # noqa: F401


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__path__ = []
    for k, v in attrs.items():
        setattr(m, k, v)
    sys.modules[name] = m


stub("deepspeed")
stub("taming"); stub("taming.modules"); stub("taming.modules.vqvae")
stub("taming.modules.vqvae.quantize", VectorQuantizer2=None)

import torch  # noqa: E402
import yaml  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from ldm.models.autoencoder import AutoencoderKL  # noqa: E402
from ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402

yaml_path, out_path = sys.argv[1], sys.argv[2]
config = OmegaConf.load(yaml_path)
p = config.model.params
with torch.device("meta"):
    unet = UNetModel(**OmegaConf.to_container(p.unet_config.params))
    vae_params = OmegaConf.to_container(p.first_stage_config.params)
    vae_params.pop("monitor", None)
    vae_params["lossconfig"] = {"target": "torch.nn.Identity"}
    vae = AutoencoderKL(**vae_params)
    # openai/clip-vit-large-patch14's text_config
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768))

shapes = {}
for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae), ("cond_stage_model.transformer.", clip)):
    for k, v in module.state_dict().items():
        shapes[prefix + k] = list(v.shape)

names = sorted(shapes)
ids = {n: i for i, n in enumerate(names)}
# each tensor: its id broadcast to its shape (a view: no memory), so the converted dict says where each went
checkpoint = {n: torch.tensor(float(ids[n])).expand(shapes[n]) for n in names}

with open(yaml_path) as f:
    original = yaml.safe_load(f)
unet_cfg = sfu.create_unet_diffusers_config_from_ldm(original, checkpoint)
vae_cfg = sfu.create_vae_diffusers_config_from_ldm(original, checkpoint)
converted = {
    "unet": sfu.convert_ldm_unet_checkpoint(checkpoint, unet_cfg),
    "vae": sfu.convert_ldm_vae_checkpoint(checkpoint, vae_cfg),
    "clip": sfu.convert_ldm_clip_checkpoint(checkpoint),
}
rows = []
placed = set()
for part, sd in converted.items():
    for dk, t in sd.items():
        src = names[int(t[(0,) * t.dim()].item())] if t.dim() else names[int(t.item())]
        rows.append(f"{src}\t{part}\t{dk}\t{','.join(map(str, t.shape))}")
        placed.add(src)
unplaced = [n for n in names if n not in placed]
with open(out_path, "w") as f:
    f.write("# ldm_key\tpart\tdiffusers_key\tdiffusers_shape (from scripts/goldens/instructdiffusion_keys.py)\n")
    f.write(f"# unet_config {dict((k, unet_cfg[k]) for k in ('in_channels', 'out_channels', 'block_out_channels', 'down_block_types', 'up_block_types', 'layers_per_block', 'attention_head_dim', 'cross_attention_dim'))}\n")
    f.write(f"# vae_config {dict((k, vae_cfg[k]) for k in ('block_out_channels', 'latent_channels', 'layers_per_block', 'scaling_factor'))}\n")
    for n in unplaced:
        f.write(f"# unplaced {n}\n")
    f.write("\n".join(sorted(rows)) + "\n")
print(len(names), "ldm tensors;", len(rows), "converted;", len(unplaced), "unplaced:", unplaced[:10])
print(unet_cfg)
print(vae_cfg)

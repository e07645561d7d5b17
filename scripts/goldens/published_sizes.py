"""Goldens for the published-size parity tests (tests/Elect.Tests/PublishedSizeTests.cs).

Builds every model component from the config.json its published checkpoint ships
(tests/Elect.Tests/Data/published-configs/<name>/config.json) with the depth cuts of
published-configs/cuts.json, fills it with deterministic weights (no weight file is stored), runs a
small input and writes the outputs to OUT/<name>.safetensors.

Run (in the reference chroot, one component at a time keeps RAM below ~6 GB):
    REF_PYTHONPATH=/tmp/refsrc/diffusers/src /work/shared/reference/py scripts/goldens/published_sizes.py \
        tests/Elect.Tests/Data/published-sizes [name ...]

Deterministic weights (the C# twin is src/Elect/Modeling/SeededInit.cs; keep them identical):
    g = torch.Generator().manual_seed(seed)                 # CPU generator, one per component
    for name in sorted(named_parameters)                    # code-point order of the reference names
        t = torch.randn(shape, generator=g)                 # float32
        ndim >= 2:            t *= 1 / sqrt(prod(shape[1:]))  (linear, conv, embedding: fan-in scaling)
        ndim == 1, *.bias:    t *= 0.02
        ndim == 1, otherwise: t = t * 0.1 + 1                 (norm scales)
Parameters only: buffers (SD3's sin-cos position grid) keep what the model computes. Tied parameters
are listed once (named_parameters removes duplicates). Inputs come from a second CPU generator seeded
seed + 1, drawn in the order this script draws them; token ids and timesteps are stored.
The metadata records the parameter count and the SHA-256 of "name<TAB>d0,d1,...\\n" over the sorted
names, so the C# side proves it draws for the same parameters in the same order.
"""
import copy
import hashlib
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "..", "tests", "Elect.Tests", "Data", "published-configs")


def load_config(name, file="config.json"):
    with open(os.path.join(CONFIGS, name, file)) as f:
        cfg = json.load(f)
    with open(os.path.join(CONFIGS, "cuts.json")) as f:
        cuts = json.load(f)
    cfg = copy.deepcopy(cfg)
    cfg.update(cuts.get(name, {}))
    return cfg


def fill(model, seed):
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    lines = []
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            assert p.dtype == torch.float32, (name, p.dtype)
            shape = tuple(p.shape)
            t = torch.randn(shape, generator=g, dtype=torch.float32)
            if len(shape) >= 2:
                t.mul_(1.0 / math.sqrt(math.prod(shape[1:])))
            elif name.endswith("bias"):
                t.mul_(0.02)
            else:
                t.mul_(0.1).add_(1.0)
            p.copy_(t)
            lines.append(f"{name}\t{','.join(str(d) for d in shape)}\n")
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    return {"seed": str(seed), "params_count": str(len(lines)), "params_sha256": digest}


def strided(x, step):
    """Large hidden states are stored at every step-th feature (x[..., ::step])."""
    return x[..., ::step].contiguous()


def clip_ids(pad):
    """Two prompts of different lengths, BOS 49406 ... EOS 49407, padded to 77 with `pad`."""
    rows = []
    for n, start in ((5, 320), (23, 1200)):
        toks = [49406] + [start + 37 * i % 40000 for i in range(n)] + [49407]
        rows.append(toks + [pad] * (77 - len(toks)))
    return torch.tensor(rows, dtype=torch.int64)


def unet(seed):
    from diffusers import UNet2DConditionModel
    m = UNet2DConditionModel.from_config(load_config("ip2p-unet")).eval()
    meta = fill(m, seed)
    g = torch.Generator().manual_seed(seed + 1)
    sample = torch.randn((2, 8, 8, 16), generator=g)
    ehs = torch.randn((2, 77, 768), generator=g)
    t = torch.tensor([999.0, 421.5])
    with torch.no_grad():
        out = m(sample, t, encoder_hidden_states=ehs).sample
    return {"timestep": t, "out": out}, meta


def vae(name, seed):
    from diffusers import AutoencoderKL
    m = AutoencoderKL.from_config(load_config(name)).eval()
    meta = fill(m, seed)
    g = torch.Generator().manual_seed(seed + 1)
    image = torch.randn((1, 3, 32, 64), generator=g) * 0.5
    with torch.no_grad():
        post = m.encode(image).latent_dist
        decoded = m.decode(post.mean).sample
    return {"latent_mean": post.mean, "latent_std": post.std, "decoded": decoded}, meta


def clip(name, seed, pad, projection):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    cfg = CLIPTextConfig(**load_config(name))
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    m = cls(cfg).float().eval()  # the config's torch_dtype would leave some layers in float16
    meta = fill(m, seed)
    ids = clip_ids(pad)
    with torch.no_grad():
        o = m(ids, output_hidden_states=True)
    res = {"input_ids": ids,
           "last_hidden_state": strided(o.last_hidden_state, 16),
           "penultimate_hidden_state": strided(o.hidden_states[-2], 16)}
    if projection:
        res["text_embeds"] = o.text_embeds
    else:
        res["pooled_output"] = o.pooler_output
    return res, meta


def t5(seed):
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(**load_config("sd3-text-encoder-3"))
    m = T5EncoderModel(cfg).float().eval()
    if m.encoder.embed_tokens.weight is not m.shared.weight:
        m.encoder.embed_tokens = m.shared  # one token table, as the port has
    meta = fill(m, seed)
    toks = [100 + 311 * i % 32000 for i in range(60)] + [1]
    ids = torch.tensor([toks + [0] * (77 - len(toks))], dtype=torch.int64)
    with torch.no_grad():
        out = m(input_ids=ids).last_hidden_state
    return {"input_ids": ids, "last_hidden_state": strided(out, 32)}, meta


def transformer(seed):
    from diffusers import SD3Transformer2DModel
    m = SD3Transformer2DModel.from_config(load_config("ultraedit-transformer")).eval()
    meta = fill(m, seed)
    g = torch.Generator().manual_seed(seed + 1)
    hidden = torch.randn((2, 32, 16, 24), generator=g)
    ehs = torch.randn((2, 154, 4096), generator=g)
    pooled = torch.randn((2, 2048), generator=g)
    t = torch.tensor([1000.0, 437.25])
    with torch.no_grad():
        out = m(hidden_states=hidden, encoder_hidden_states=ehs, pooled_projections=pooled, timestep=t,
                return_dict=False)[0]
    return {"timestep": t, "out": out}, meta


def scheduler(name, cls_name, steps):
    """Timesteps and sigmas from the published scheduler config (its defaults are what is tested)."""
    import diffusers
    with open(os.path.join(CONFIGS, name, "scheduler_config.json")) as f:
        cfg = json.load(f)
    sch = getattr(diffusers, cls_name).from_config(cfg)
    res = {}
    for n in steps:
        sch.set_timesteps(n)
        res[f"timesteps_{n}"] = torch.as_tensor(sch.timesteps).to(torch.float64)
        res[f"sigmas_{n}"] = torch.as_tensor(sch.sigmas).to(torch.float64)
        if hasattr(sch, "init_noise_sigma"):
            res[f"init_noise_sigma_{n}"] = torch.tensor([float(sch.init_noise_sigma)], dtype=torch.float64)
    return res, {"steps": ",".join(str(n) for n in steps)}


COMPONENTS = {
    "ip2p-unet": lambda: unet(1001),
    "ip2p-vae": lambda: vae("ip2p-vae", 1002),
    "ip2p-text-encoder": lambda: clip("ip2p-text-encoder", 1003, pad=49407, projection=False),
    "sd3-text-encoder-2": lambda: clip("sd3-text-encoder-2", 1004, pad=0, projection=True),
    "sd3-text-encoder-3": lambda: t5(1005),
    "sd3-vae": lambda: vae("sd3-vae", 1006),
    "ultraedit-transformer": lambda: transformer(1007),
    "ip2p-scheduler": lambda: scheduler("ip2p-scheduler", "EulerAncestralDiscreteScheduler", (20, 100)),
    "sd3-scheduler": lambda: scheduler("sd3-scheduler", "FlowMatchEulerDiscreteScheduler", (28, 50)),
}


def main():
    out_dir = sys.argv[1]
    names = sys.argv[2:] or list(COMPONENTS)
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    for name in names:
        torch.set_default_dtype(torch.float32)
        tensors, meta = COMPONENTS[name]()
        tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
        save_file(tensors, os.path.join(out_dir, f"{name}.safetensors"), metadata=meta)
        print(name, meta.get("params_count", "no"), "params,", {k: tuple(v.shape) for k, v in tensors.items()}, flush=True)


if __name__ == "__main__":
    main()

"""Writes the torch.save test checkpoints of tests/Elect.Tests/Data/pickle/ (run in the reference
environment, PyTorch 2.14):

    REF_PYTHONPATH=/tmp/refsrc/diffusers/src ../shared/reference/py scripts/goldens/make_pickle_checkpoints.py tests/Elect.Tests/Data/pickle

Every benign file is also loaded back with torch.load(weights_only=True) (which must accept it)
and its expected tensors are written, contiguous, to a safetensors file beside it. Every malicious
file must be refused by torch.load(weights_only=True) too; running its payload would create a
marker file /tmp/elect-pickle-pwned-*, which the C# tests assert is never created.
"""
import argparse
import collections
import io
import json
import os
import pickle
import shutil
import subprocess
import sys

import torch
from safetensors.torch import save_file

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)


def expect_loads(path):
    return torch.load(path, weights_only=True)


def expect_refused(path):
    try:
        torch.load(path, weights_only=True)
    except Exception as e:  # UnpicklingError, or a RuntimeError about a non-zip pickle
        print(f"  torch refuses {os.path.basename(path)}: {str(e).splitlines()[0][:120]}")
        return
    raise SystemExit(f"torch.load(weights_only=True) accepted {path}")


def save_expected(name, tensors):
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, os.path.join(OUT, name))


# --- tensors of every dtype and layout -------------------------------------------------------
base = torch.arange(12, dtype=torch.float32) * 0.25 - 1.0
tensors = {
    "f32": torch.randn(2, 3),
    "f16": torch.randn(3, 2).half(),
    "bf16": torch.randn(4).bfloat16(),
    "f64": torch.randn(2, 2, dtype=torch.float64),
    "i64": torch.tensor([[1, -2, 3], [2**40, -(2**50), 0]], dtype=torch.int64),
    "i32": torch.tensor([7, -8, 2**31 - 1], dtype=torch.int32),
    "i16": torch.tensor([-3, 300], dtype=torch.int16),
    "i8": torch.tensor([-128, 5, 127], dtype=torch.int8),
    "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True, True]),
    "transposed": torch.randn(3, 4).t(),                      # non-contiguous, strides (1, 4)
    "shared_a": base[2:8].view(2, 3),                          # views into one storage at offsets 2 and 5
    "shared_b": base[5:11],
    "strided": base.view(3, 4)[:, 1::2],                       # offset 1, strides (4, 2)
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 3),
    "param": torch.nn.Parameter(torch.randn(2, 2)),
}
with_attr = torch.randn(2)
with_attr.note = "kept by _rebuild_from_type_v2"  # a tensor with Python attributes
param_attr = torch.nn.Parameter(torch.randn(3))
param_attr.tag = 1                                 # pickled through _rebuild_parameter_with_state
tensors["with_attr"] = with_attr
tensors["param_attr"] = param_attr
assert not tensors["transposed"].is_contiguous()
save_expected("tensors.safetensors", tensors)
for proto in (1, 2, 4, 5):
    path = os.path.join(OUT, f"tensors_p{proto}.pt")
    torch.save(tensors, path, pickle_protocol=proto, _use_new_zipfile_serialization=True)
    # torch's weights_only unpickler knows only the opcodes of protocol 2 as torch.save writes it;
    # the file is our own, so the full unpickler checks protocols 4 and 5
    back = expect_loads(path) if proto == 2 else torch.load(path, weights_only=False)
    assert back["shared_a"].untyped_storage().data_ptr() == back["shared_b"].untyped_storage().data_ptr()
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


# --- plain containers in every pickle protocol (no torch at all) -------------------------------
plain = {
    "int": 7, "neg": -300, "i32": 2**31 - 1, "big": 2**70, "neg_big": -(2**65), "float": 1.5e-3, "nan_free": -0.0,
    "str": "caf\u00e9 \u2713\nline", "empty": "", "bytes": b"\x00\xff", "none": None, "t": True, "f": False,
    "list": [1, [2, [3]]], "tuple1": (1,), "tuple3": (1, 2, 3), "tuple5": (1, 2, 3, 4, 5), "empty_tuple": (),
    "set": {5, 6}, "odict": collections.OrderedDict([("b", 1), ("a", 2)]),
    "complex": complex(1.5, -2.0), "shared": None, 3: "int key", (1, "k"): "tuple key",
}
shared_list = [1, 2]
plain["shared"] = [shared_list, shared_list]  # memo: the same object twice
for proto in range(6):
    obj = dict(plain)
    if proto >= 4:
        obj["frozenset"] = frozenset({"a"})  # the FROZENSET opcode; older protocols call builtins.frozenset, which torch refuses
    with open(os.path.join(OUT, f"plain_p{proto}.pkl"), "wb") as f:
        pickle.dump(obj, f, protocol=proto)

# --- a tiny module's state_dict (OrderedDict with _metadata) ---------------------------------
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)
        self.norm = torch.nn.BatchNorm1d(2)  # running_mean/var buffers + int64 num_batches_tracked
        self.head = torch.nn.Linear(2, 3, bias=False)
        self.head.weight = torch.nn.Parameter(self.head.weight.detach().clone())


module = Tiny()
with torch.no_grad():
    module.norm.running_mean.copy_(torch.tensor([0.1, -0.2]))
    module.norm.num_batches_tracked.fill_(9)
sd = module.state_dict()
assert isinstance(sd, collections.OrderedDict)
save_expected("module_state.safetensors", sd)
torch.save(sd, os.path.join(OUT, "module_state.bin"))
expect_loads(os.path.join(OUT, "module_state.bin"))

# --- Lightning-like checkpoint: plain containers around the state_dict ------------------------
ckpt = {
    "state_dict": collections.OrderedDict((f"model.{k}", v) for k, v in sd.items()),
    "global_step": 7,
    "epoch": 1,
    "pytorch-lightning_version": "1.9.0",
    "hparams": {
        "lr": 1e-4, "betas": (0.9, 0.999), "names": ["unet", "vae"], "none": None, "flag": True,
        "big": 2**70, "neg": -5, "neg_big": -(2**65), "blob": b"\x00\x01\xff", "tags": {3, 4},
        "dtype": torch.float16, "size": torch.Size([2, 3]), "nested": {"deep": [1, (2.5, "x")]},
    },
    "loops": None,
}
torch.save(ckpt, os.path.join(OUT, "lightning.ckpt"))
expect_loads(os.path.join(OUT, "lightning.ckpt"))

# Lightning with objects torch's weights_only refuses (hyper-parameters as a Namespace, a
# callback state with a custom class); the state_dict itself is plain.
ckpt_custom = dict(ckpt)
ckpt_custom["hyper_parameters"] = argparse.Namespace(lr=1e-4, name="ip2p")
ckpt_custom["callbacks"] = {"timer": collections.Counter(a=1), "stamp": __import__("datetime").timedelta(seconds=5)}
torch.save(ckpt_custom, os.path.join(OUT, "lightning_custom.ckpt"))
expect_refused(os.path.join(OUT, "lightning_custom.ckpt"))

# --- a dtype of torch's "new" kind (rebuilt by _rebuild_tensor_v3 from an untyped storage) -------
torch.save({"u16": torch.tensor([1, 2], dtype=torch.uint16)}, os.path.join(OUT, "uint16.pt"))
expect_loads(os.path.join(OUT, "uint16.pt"))

# --- a TorchScript archive (also a zip with data.pkl, but of code) --------------------------------
torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), os.path.join(OUT, "torchscript.pt"))

# --- legacy (pre-1.6) format ------------------------------------------------------------------
torch.save({"w": torch.ones(2)}, os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)
expect_loads(os.path.join(OUT, "legacy.pt"))


# --- malicious pickles -------------------------------------------------------------------------
class EvilSystem:
    def __reduce__(self):
        return (os.system, ("touch /tmp/elect-pickle-pwned-system",))


class EvilEval:
    def __reduce__(self):
        return (eval, ("open('/tmp/elect-pickle-pwned-eval', 'w').close()",))


class EvilPopen:
    def __reduce__(self):
        return (subprocess.Popen, (["touch", "/tmp/elect-pickle-pwned-popen"],))


class EvilInState:
    """A legitimate-looking state dict whose entry calls os.system."""
    def __reduce__(self):
        return (os.system, ("touch /tmp/elect-pickle-pwned-nested",))


torch.save({"w": torch.ones(2), "payload": EvilSystem()}, os.path.join(OUT, "evil_system.pt"))
torch.save({"payload": EvilEval()}, os.path.join(OUT, "evil_eval.pt"))
torch.save({"payload": EvilPopen()}, os.path.join(OUT, "evil_popen.pt"), pickle_protocol=4)
torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": EvilInState()},
           os.path.join(OUT, "evil_in_hparams.ckpt"))
with open(os.path.join(OUT, "evil_raw.pkl"), "wb") as f:
    pickle.dump(EvilSystem(), f, protocol=4)
for name in ("evil_system.pt", "evil_eval.pt", "evil_popen.pt", "evil_in_hparams.ckpt", "evil_raw.pkl"):
    expect_refused(os.path.join(OUT, name))
for marker in ("system", "eval", "popen", "nested"):
    assert not os.path.exists(f"/tmp/elect-pickle-pwned-{marker}")

# --- a tiny diffusers VAE saved the way diffusers writes .bin weights ---------------------------
from diffusers import AutoencoderKL

vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                    norm_num_groups=4, sample_size=16).eval()
with torch.no_grad():
    for p in vae.parameters():
        p.add_(torch.randn_like(p) * 0.05)  # move off the default init so every weight matters
vae_dir = os.path.join(OUT, "vae")
for sub in ("single-bin", "safetensors", "fp16-bin", "sharded-bin"):
    shutil.rmtree(os.path.join(vae_dir, sub), ignore_errors=True)
vae.save_pretrained(os.path.join(vae_dir, "single-bin"), safe_serialization=False)
vae.save_pretrained(os.path.join(vae_dir, "safetensors"), safe_serialization=True)
import copy
copy.deepcopy(vae).half().save_pretrained(os.path.join(vae_dir, "fp16-bin"), safe_serialization=False, variant="fp16")
vae.save_pretrained(os.path.join(vae_dir, "sharded-bin"), safe_serialization=False, max_shard_size="60KB")
for sub in ("single-bin", "fp16-bin", "sharded-bin"):
    print(f"  vae/{sub}: {sorted(os.listdir(os.path.join(vae_dir, sub)))}")
image = torch.rand(1, 3, 16, 16) * 2 - 1
with torch.no_grad():
    post = vae.encode(image).latent_dist
    decoded = vae.decode(post.mean).sample
save_file({"image": image, "latent_mean": post.mean.contiguous(), "latent_std": post.std.contiguous(),
           "decoded": decoded.contiguous()}, os.path.join(vae_dir, "expected.safetensors"))

total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
print(f"wrote {OUT}: {total} bytes")

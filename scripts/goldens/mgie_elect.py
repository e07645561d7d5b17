"""Goldens of the MGIE family's editing runs, from the ELECT authors' StableDiffusionInstructPix2PixEnsemblePipeline.

MGIE, as the ELECT repository loads it (utils.py load_model "mgie"), is the timbrooks/instruct-pix2pix pipeline with its
UNet's state dict replaced by mgie_7b/unet.pt, called with prompt_embeds = edit_head([IMG] states, emb) and
negative_prompt_embeds = NULL = edit_head(zeros, emb) (mgie_module.py); diffusers' _encode_prompt makes the batch
[prompt_embeds, NULL, NULL]. Here: ../shared/fixtures' ip2p-tiny stands in for instruct-pix2pix (config, VAE, scheduler),
its UNet gets mgie-tiny's unet.pt, and the embeddings are mgie-tiny-golden.safetensors' caseK.prompt_embeds and
null_prompt_embeds (what the reference edit head made of the reference LLM's [IMG] states). Float32 on the CPU.

Runs (default guidance of both methods: 7.5 text, 1.5 image):
- plain: the pipeline's __call__, 20 steps, one CPU generator per seed (output_type "np": float HWC before rounding);
- ELECT: get_best_output_from_various_seeds, 20 steps, stopping step 8, mask steps 0..4, all seeds kept.
Unlike the reference's inference.py (whose select_one_seed branch passes the plain instruction text for MGIE, i.e. runs
ELECT without the MLLM), ELECT gets the MLLM's embeddings, as the plain runs do.

The fixtures' four deliberate fixes (../shared/fixtures/README.md) are applied from outside, without editing the
authors' code: (1) the module's torch.Generator(device=...) is a CPU generator; (2) its cv2.resize(..., (512, 512)) of
the relevance mask resizes to the image's own size; (3) its sigma.to(torch.float16) keeps float32 (the module's
torch.float16 reads float32); (4) the scheduler's step index is set for the current timestep before scale_model_input
(the authors set it after, so their first candidate was scaled with the previous sigma). numpy 2's percentile(method=)
stands in for the removed interpolation= keyword. As a check of the set-up, the fixtures' own ip2p.elect run is redone
first on ip2p-tiny's own UNet and must reproduce golden.safetensors (best seed, BIS to 1e-5, images within 1 level),
as must its ip2p.elect2 (non-square, only the winner kept) and its ip2p.vanilla.seed11 (to 1e-5).

    REF_MOUNTS=/work/shared REF_PYTHONPATH=/tmp/refsrc/diffusers/src:/tmp/refsrc/elect \\
        ../shared/reference/py scripts/goldens/mgie_elect.py ../shared/fixtures tests/Elect.Tests/Data/mgie-tiny \\
        tests/Elect.Tests/Data/mgie-tiny-golden.safetensors tests/Elect.Tests/Data/mgie-elect-golden.safetensors
"""

import argparse
import glob
import json
import os
import sys

import pipelines.ensemble_pipeline as ens  # before torch: otherwise this namespace package does not resolve here
import elect_fixes  # the fixtures' four fixes, applied from outside
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

STEPS = 20
PLAIN_SEEDS = [11]
ELECT_SEEDS = [11, 22, 33, 44]
ELECT = dict(num_inference_steps=STEPS, stopping_step=8, first_step_for_mask_extraction=0, last_step_for_mask_extraction=4)


def elect(pipe, image, seeds, visualize_all_seeds=True, **call):
    ens.cv2.size = image.size  # (width, height)
    bis = elect_fixes.record_bis(pipe)
    with torch.no_grad():
        out = pipe.get_best_output_from_various_seeds(
            image=image, args=argparse.Namespace(candidate_seeds=seeds, visualize_all_seeds=visualize_all_seeds), **ELECT, **call)
    del pipe.calculate_BIS
    return elect_fixes.elect_tensors(pipe, out, seeds, bis, visualize_all_seeds)


def plain(pipe, image, seed, **call):
    with torch.no_grad():
        out = pipe(image=image, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="np", **call)
    return torch.from_numpy(np.ascontiguousarray(out.images[0], dtype=np.float32))


def main():
    fixtures, mgie_dir, mgie_golden_path, out_path = sys.argv[1:5]
    elect_fixes.apply(ens, full_precision_sigma=True)
    pipe = ens.StableDiffusionInstructPix2PixEnsemblePipeline.from_pretrained(
        os.path.join(fixtures, "models", "ip2p-tiny"), torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    elect_fixes.index_before_scaling(pipe)

    # set-up check: the fixtures' own runs on ip2p-tiny's own UNet
    golden = load_file(os.path.join(fixtures, "golden.safetensors"))
    cat = Image.open(os.path.join(fixtures, "models", "ip2p-input.png")).convert("RGB")
    check = elect(pipe, cat, [11, 22, 33, 44, 55], prompt=["Replace the cat with a bear"])
    assert int(check["best_seed"][0]) == int(golden["ip2p.elect.best_seed"][0]), (check["best_seed"], golden["ip2p.elect.best_seed"])
    bis_diff = (check["bis"] - golden["ip2p.elect.bis"].double()).abs().max().item()
    img_diff = max((check[k].int() - golden["ip2p.elect." + k].int()).abs().max().item() for k in check if k.startswith("output-"))
    mushroom = Image.open(os.path.join(fixtures, "models", "ip2p-input2.png")).convert("RGB")
    ELECT.update(num_inference_steps=10, stopping_step=4, last_step_for_mask_extraction=3)
    check2 = elect(pipe, mushroom, [101, 202, 303], visualize_all_seeds=False, prompt=["change the red mushroom into a blue one"])
    ELECT.update(num_inference_steps=STEPS, stopping_step=8, last_step_for_mask_extraction=4)
    assert int(check2["best_seed"][0]) == int(golden["ip2p.elect2.best_seed"][0]), (check2["best_seed"], golden["ip2p.elect2.best_seed"])
    bis_diff = max(bis_diff, (check2["bis"] - golden["ip2p.elect2.bis"].double()).abs().max().item())
    img_diff = max(img_diff, max((check2[k].int() - golden["ip2p.elect2." + k].int()).abs().max().item() for k in check2 if k.startswith("output-")))
    vanilla = plain(pipe, cat, 11, prompt=["Replace the cat with a bear"], guidance_scale=7.5, image_guidance_scale=1.5)
    vanilla_diff = (vanilla - golden["ip2p.vanilla.seed11"].float()).abs().max().item()
    print("set-up check vs golden.safetensors: ip2p.elect and ip2p.elect2 max BIS diff", bis_diff, "max 8-bit diff", img_diff,
          "; ip2p.vanilla.seed11 max diff", vanilla_diff, file=sys.stderr)
    assert bis_diff <= 1e-5 and img_diff <= 1 and vanilla_diff <= 1e-5, (bis_diff, img_diff, vanilla_diff)

    # MGIE: the UNet's weights from unet.pt (torch.load of the fixture, as utils.py loads mgie_7b/unet.pt)
    state = torch.load(os.path.join(mgie_dir, "mgie_7b", "unet.pt"), map_location="cpu")
    pipe.unet.load_state_dict(state)
    mgie = load_file(mgie_golden_path)
    null = mgie["null_prompt_embeds"].float()
    manifest = json.load(open(os.path.join(os.path.dirname(mgie_golden_path), "mgie-tiny-manifest.json")))
    cases = manifest["cases"]
    t, meta = {}, []
    for k, case in enumerate(cases):
        image = Image.open(os.path.join(mgie_dir, "inputs", case["image"])).convert("RGB")
        w, h = image.size
        assert w % 64 == 0 and h % 64 == 0, f"{case['image']}: {w}x{h} is not already resized (sides multiples of 64)"
        embeds = mgie[f"case{k}.prompt_embeds"].float()
        call = dict(prompt_embeds=embeds, negative_prompt_embeds=null)
        for seed in PLAIN_SEEDS:
            t[f"case{k}.plain.seed{seed}"] = plain(pipe, image, seed, **call)
        for key, v in elect(pipe, image, ELECT_SEEDS, **call).items():
            t[f"case{k}.elect.{key}"] = v
        print(f"case{k} ({case['image']}, {w}x{h}): ELECT bis", t[f"case{k}.elect.bis"].tolist(),
              "best", int(t[f"case{k}.elect.best_seed"][0]), file=sys.stderr)
        meta.append({"image": case["image"], "instruction": case.get("instruction"), "size": [w, h]})
    save_file({k: v.contiguous() for k, v in t.items()}, out_path,
              metadata={"cases": json.dumps(meta), "plain_seeds": json.dumps(PLAIN_SEEDS), "elect_seeds": json.dumps(ELECT_SEEDS),
                        "elect": json.dumps(ELECT), "steps": str(STEPS), "guidance": "7.5 text, 1.5 image (the pipelines' defaults)"})


if __name__ == "__main__":
    main()

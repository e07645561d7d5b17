"""A tiny ELECT run golden (UltraEdit family) for an instruction containing "?!" (tokenizer_2's pad "!" is special).

Runs the ELECT repository's StableDiffusion3InstructPix2PixEnsemblePipeline.get_best_output_from_various_seeds
on the ultraedit-tiny fixture (float32, CPU) with the fixtures' two deliberate fixes applied from outside,
without changing the authors' code (see ../shared/fixtures/README.md):
1. candidate noise from CPU generators: the module's torch.Generator(device='cuda') becomes torch.Generator();
2. the relevance mask is resized to the image's own size (cv2.resize, bilinear, half-pixel centres) instead
   of a fixed 512x512.
(Also numpy 2's np.percentile(method=) stands in for the removed interpolation= keyword, same rule.)
As a check of that set-up, the fixture's own run ("Replace the cat with a bear") is redone first and must
reproduce golden.safetensors' ultraedit.elect.* (best seed, BIS to 1e-5, images exactly).

    REF_MOUNTS=/work/shared REF_PYTHONPATH=/tmp/refsrc/diffusers/src:/tmp/refsrc/elect \\
        ../shared/reference/py scripts/goldens/make_ultraedit_elect_prompt_golden.py \\
        ../shared/fixtures tests/Elect.Tests/Data/ultraedit-elect-stormy.safetensors
"""

import argparse
import json
import os
import sys

import pipelines.ensemble_sd3_pipeline as ens  # before torch: otherwise this namespace package does not resolve here
import elect_fixes  # the fixtures' fixes 1 and 2, applied from outside
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

PROMPT = "make the sky look stormy?! add lightning"
SEEDS = [11, 22, 33, 44]
PARAMS = dict(num_inference_steps=20, stopping_step=8, first_step_for_mask_extraction=0,
              last_step_for_mask_extraction=4, guidance_scale=7.0, image_guidance_scale=1.5)


def run(pipe, image, prompt):
    ens.cv2.size = image.size  # (width, height)
    bis = elect_fixes.record_bis(pipe)
    with torch.no_grad():
        out = pipe.get_best_output_from_various_seeds(
            prompt=prompt, image=image, args=argparse.Namespace(candidate_seeds=SEEDS, visualize_all_seeds=True), **PARAMS)
    return elect_fixes.elect_tensors(pipe, out, SEEDS, bis)


def main():
    fixtures, out_path = sys.argv[1], sys.argv[2]
    elect_fixes.apply(ens)
    pipe = ens.StableDiffusion3InstructPix2PixEnsemblePipeline.from_pretrained(
        os.path.join(fixtures, "models", "ultraedit-tiny"), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(os.path.join(fixtures, "models", "ultraedit-input.png")).convert("RGB")
    assert image.size == (128, 128), image.size

    # set-up check: the fixture's own ELECT run
    golden = load_file(os.path.join(fixtures, "golden.safetensors"))
    check = run(pipe, image, "Replace the cat with a bear")
    assert int(check["best_seed"][0]) == int(golden["ultraedit.elect.best_seed"][0])
    bis_diff = (check["bis"] - golden["ultraedit.elect.bis"].double()).abs().max().item()
    img_diff = max((check[k].int() - golden["ultraedit.elect." + k].int()).abs().max().item()
                   for k in check if k.startswith("output-"))
    print("set-up check vs golden.safetensors: max BIS diff", bis_diff, "max 8-bit diff", img_diff, file=sys.stderr)
    assert bis_diff <= 1e-5 and img_diff <= 1, (bis_diff, img_diff)

    t = run(pipe, image, PROMPT)
    print(PROMPT, "bis", t["bis"].tolist(), "best", int(t["best_seed"][0]), file=sys.stderr)
    save_file({k: v.contiguous() for k, v in t.items()}, out_path,
              metadata={"prompt": PROMPT, "params": json.dumps(PARAMS), "seeds": json.dumps(SEEDS)})


if __name__ == "__main__":
    main()

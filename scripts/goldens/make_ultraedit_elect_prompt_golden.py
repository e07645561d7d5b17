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
import cv2
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

PROMPT = "make the sky look stormy?! add lightning"
SEEDS = [11, 22, 33, 44]
PARAMS = dict(num_inference_steps=20, stopping_step=8, first_step_for_mask_extraction=0,
              last_step_for_mask_extraction=4, guidance_scale=7.0, image_guidance_scale=1.5)


class _CpuGenerators:
    """The module's `torch`, except that Generator(device=...) is a CPU generator."""
    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def Generator(device=None):
        return torch.Generator()


class _NumpyPercentile:
    """The module's `np`, except that percentile(interpolation=...) is numpy 2's percentile(method=...)
    (the same quantile rule; numpy 2 dropped the old keyword the authors' code uses)."""
    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def percentile(a, q, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return np.percentile(a, q, **kwargs)


class _OwnSizeResize:
    """The module's `cv2`, except that resize(..., (512, 512)) resizes to the input image's size."""
    size = None

    def __getattr__(self, name):
        return getattr(cv2, name)

    def resize(self, src, dsize, *args, **kwargs):
        return cv2.resize(src, self.size, *args, **kwargs)


def run(pipe, image, prompt):
    ens.cv2.size = image.size  # (width, height)
    bis = []
    original = type(pipe).calculate_BIS

    def calculate_bis(self, input_image_np, z0_image):
        score = original(self, input_image_np, z0_image)
        bis.append(float(score))
        return score

    pipe.calculate_BIS = calculate_bis.__get__(pipe)
    with torch.no_grad():
        out = pipe.get_best_output_from_various_seeds(
            prompt=prompt, image=image, args=argparse.Namespace(candidate_seeds=SEEDS, visualize_all_seeds=True), **PARAMS)
    best = [int(k.rsplit("-", 1)[1]) for k in out if k.startswith("output-best_seed-")]
    assert len(best) == 1
    t = {
        "seeds": torch.tensor(SEEDS, dtype=torch.int64),
        "bis": torch.tensor(bis, dtype=torch.float64),
        "best_seed": torch.tensor([best[0]], dtype=torch.int64),
        "relevance_map": torch.from_numpy(np.asarray(pipe.mean_relevance_map, dtype=np.float32).copy()),
    }
    for k, img in out.items():
        t[k] = torch.from_numpy(np.array(img, dtype=np.uint8).copy())
    return t


def main():
    fixtures, out_path = sys.argv[1], sys.argv[2]
    ens.torch = _CpuGenerators()
    ens.cv2 = _OwnSizeResize()
    ens.np = _NumpyPercentile()
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

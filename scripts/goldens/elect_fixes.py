"""The fixtures' deliberate fixes (../shared/fixtures/README.md), applied from outside to an ELECT ensemble-pipeline
module of the authors' repository without editing their code, and a BIS recorder. Shared by the golden scripts that
run the authors' pipelines (make_ultraedit_elect_prompt_golden.py, mgie_elect.py).

    import pipelines.ensemble_pipeline as ens   # the authors' module first (before torch: namespace-package quirk)
    import elect_fixes
    elect_fixes.apply(ens, full_precision_sigma=True)
"""
import cv2
import numpy as np
import torch


class ModuleTorch:
    """The module's `torch`, except that Generator(device=...) is a CPU generator (fix 1) and, with
    `full_precision_sigma`, float16 reads float32 (fix 3: the only float16 the IP2P module names is its cast of sigma in
    the Euler-ancestral step)."""
    def __init__(self, full_precision_sigma=False):
        if full_precision_sigma:
            self.float16 = torch.float32

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def Generator(device=None):
        return torch.Generator()


class NumpyPercentile:
    """The module's `np`, except that percentile(interpolation=...) is numpy 2's percentile(method=...) (the same
    quantile rule; numpy 2 dropped the old keyword the authors' code uses)."""
    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def percentile(a, q, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return np.percentile(a, q, **kwargs)


class OwnSizeResize:
    """The module's `cv2`, except that resize(..., (512, 512)) resizes to the input image's size (fix 2); set `size`
    ((width, height)) before each run."""
    size = None

    def __getattr__(self, name):
        return getattr(cv2, name)

    def resize(self, src, dsize, *args, **kwargs):
        return cv2.resize(src, self.size, *args, **kwargs)


def apply(module, full_precision_sigma=False):
    """Fixes 1-3 on an ensemble-pipeline module (its torch, cv2, np names)."""
    module.torch = ModuleTorch(full_precision_sigma)
    module.cv2 = OwnSizeResize()
    module.np = NumpyPercentile()


def index_before_scaling(pipe):
    """Fix 4 (IP2P): the scheduler's step index belongs to the current timestep before scale_model_input reads its sigma."""
    scheduler = pipe.scheduler
    original = type(scheduler).scale_model_input

    def scale_model_input(self, sample, timestep):
        self._init_step_index(timestep)
        return original(self, sample, timestep)

    scheduler.scale_model_input = scale_model_input.__get__(scheduler)


def record_bis(pipe):
    """Wraps pipe.calculate_BIS; returns the list each score is appended to (candidate order). `del pipe.calculate_BIS`
    removes the wrapper."""
    bis = []
    original = type(pipe).calculate_BIS

    def calculate_bis(self, input_image_np, z0_image):
        score = original(self, input_image_np, z0_image)
        bis.append(float(score))
        return score

    pipe.calculate_BIS = calculate_bis.__get__(pipe)
    return bis


def elect_tensors(pipe, out, seeds, bis, visualize_all_seeds=True):
    """An ELECT run's golden tensors: seeds, bis, best_seed, relevance_map and every 8-bit output image of `out`."""
    if visualize_all_seeds:
        best = [int(k.rsplit("-", 1)[1]) for k in out if k.startswith("output-best_seed-")]
    else:
        best = [int(k.rsplit("-", 1)[1]) for k in out if k.startswith("output-") and k != "output-mask"]
    assert len(best) == 1
    t = {
        "seeds": torch.tensor(seeds, dtype=torch.int64),
        "bis": torch.tensor(bis, dtype=torch.float64),
        "best_seed": torch.tensor([best[0]], dtype=torch.int64),
        "relevance_map": torch.from_numpy(np.asarray(pipe.mean_relevance_map, dtype=np.float32).copy()),
    }
    for k, img in out.items():
        t[k] = torch.from_numpy(np.array(img, dtype=np.uint8).copy())
    return t

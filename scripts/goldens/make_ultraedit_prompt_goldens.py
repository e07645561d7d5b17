"""UltraEdit prompt-embedding goldens for instructions with characters tokenizer_2 treats as special ("!").

Loads the ultraedit-tiny fixture with the ELECT repository's SD3 ensemble pipeline (the class the UltraEdit
family runs) in float32 on the CPU and calls its encode_prompt exactly as its __call__ does (negative prompt
None -> "", classifier-free guidance on, clip_skip None). Run from the repository root:

    REF_MOUNTS=/work/shared REF_PYTHONPATH=/tmp/refsrc/diffusers/src:/tmp/refsrc/elect \\
        ../shared/reference/py scripts/goldens/make_ultraedit_prompt_goldens.py \\
        ../shared/fixtures/models/ultraedit-tiny tests/Elect.Tests/Data/ultraedit-prompts.safetensors

Writes, per prompt index N: prompt_N.{prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds,
negative_pooled_prompt_embeds} (float32) and prompt_N.ids_{1,2,3} (the token ids, int64); the prompts are
stored in the file's metadata ("prompts", a JSON list).
"""

import json
import sys

from pipelines.ensemble_sd3_pipeline import StableDiffusion3InstructPix2PixEnsemblePipeline  # before torch: otherwise this namespace package does not resolve here
import torch
from safetensors.torch import save_file

PROMPTS = [
    "make the sky look stormy?! add lightning",
    "Add fireworks!!! and a banner that says \"HAPPY NEW YEAR!\"",
    "turn the cat into a tiger <|endoftext|> </s> <extra_id_0>",
    "Replace the cat with a bear",  # also in the fixture's golden.safetensors (ultraedit.*prompt_embeds): a cross-check
]


def main():
    folder, out = sys.argv[1], sys.argv[2]
    pipe = StableDiffusion3InstructPix2PixEnsemblePipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    tensors = {}
    with torch.no_grad():
        for n, prompt in enumerate(PROMPTS):
            pe, npe, ppe, nppe = pipe.encode_prompt(
                prompt=prompt, prompt_2=None, prompt_3=None, negative_prompt=None, negative_prompt_2=None,
                negative_prompt_3=None, do_classifier_free_guidance=True, device=torch.device("cpu"),
                clip_skip=None, num_images_per_prompt=1)
            for key, t in [("prompt_embeds", pe), ("negative_prompt_embeds", npe), ("pooled_prompt_embeds", ppe),
                           ("negative_pooled_prompt_embeds", nppe)]:
                tensors[f"prompt_{n}.{key}"] = t.detach().float().contiguous()
            for i, tok in [(1, pipe.tokenizer), (2, pipe.tokenizer_2), (3, pipe.tokenizer_3)]:
                tensors[f"prompt_{n}.ids_{i}"] = tok([prompt], padding="max_length", max_length=pipe.tokenizer_max_length,
                                                     truncation=True, return_tensors="pt").input_ids[0].long().contiguous()
            print(n, repr(prompt), tensors[f"prompt_{n}.ids_2"][:16].tolist(), file=sys.stderr)
    save_file(tensors, out, metadata={"prompts": json.dumps(PROMPTS), "pipeline": type(pipe).__name__})


if __name__ == "__main__":
    main()

"""Tokenizer parity goldens: every corpus string through every fixture tokenizer, as the reference pipelines call them.

Run from the repository root (the fixtures must be mounted into the reference chroot):

    REF_MOUNTS=/work/shared ../shared/reference/py scripts/goldens/make_tokenizer_goldens.py \
        ../shared/fixtures/models tests/Elect.Tests/Data/tokenizers

Writes corpus.json (the strings, in order) and goldens.json.gz: for each tokenizer folder the class
transformers instantiates (the one model_index.json names), and per string
- "padded": the ids of tokenizer([s], padding="max_length", max_length=77, truncation=True) exactly as
  diffusers' StableDiffusionInstructPix2PixPipeline and the ELECT repository's SD3 pipeline
  (_get_clip_prompt_embeds / _get_t5_prompt_embeds, max_length = tokenizer.model_max_length = 77) call
  them, stored without the trailing run of pad ids (the row is re-padded to 77 with pad_id);
- "unpadded": tokenizer(s).input_ids (special tokens added, no truncation, no padding).
Two more entries ("...+flags") are tokenizer_2 and tokenizer_3 with extra added tokens of every flag kind in
tokenizer_config.json's added_tokens_decoder ("config_update", applied to a copy of the folder).
"""

import gzip
import json
import os
import shutil
import sys
import tempfile

import tokenizers
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_corpus import corpus  # noqa: E402

FOLDERS = ["ip2p-tiny/tokenizer", "ultraedit-tiny/tokenizer", "ultraedit-tiny/tokenizer_2", "ultraedit-tiny/tokenizer_3"]
# the same folders with extra added tokens in tokenizer_config.json's added_tokens_decoder, one of each flag
# (lstrip / rstrip / single_word / normalized, special or not), written to a temporary copy of the folder
def _tok(content, **flags):
    return {"content": content, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False,
            "special": False, **flags}


VARIANTS = {
    "ultraedit-tiny/tokenizer_2+flags": ("ultraedit-tiny/tokenizer_2", 49408),
    "ultraedit-tiny/tokenizer_3+flags": ("ultraedit-tiny/tokenizer_3", 1100),
}


def variant_update(first_id):
    return {"added_tokens_decoder": {
        str(first_id): _tok("<mask>", lstrip=True, special=True),
        str(first_id + 1): _tok("cat", single_word=True, normalized=True),
        str(first_id + 2): _tok("AB", normalized=True),
        str(first_id + 3): _tok("sky", lstrip=True, rstrip=True),
        str(first_id + 4): _tok("<sep>", rstrip=True, special=True),
        str(first_id + 5): _tok("ing", single_word=True),
    }}


MAX_LENGTH = 77  # the pipelines' tokenizer_max_length (CLIP's model_max_length), for all three SD3 tokenizers


def load(models, folder, update=None):
    family, sub = folder.split("/")
    with open(os.path.join(models, family, "model_index.json")) as f:
        library, cls_name = json.load(f)[sub]
    assert library == "transformers", (folder, library)
    cls = getattr(transformers, cls_name)
    path = os.path.join(models, folder)
    if update:
        tmp = tempfile.mkdtemp(prefix="elect-tokvar-")
        for name in os.listdir(path):
            shutil.copy(os.path.join(path, name), tmp)
        with open(os.path.join(tmp, "tokenizer_config.json")) as f:
            config = json.load(f)
        config.update(update)
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump(config, f)
        path = tmp
    return cls_name, cls.from_pretrained(path)


def main():
    models, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    texts = corpus()
    result = {
        "reference": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "max_length": MAX_LENGTH,
        "count": len(texts),
        "tokenizers": {},
    }
    for folder in FOLDERS + list(VARIANTS):
        base, first_id = VARIANTS.get(folder, (folder, None))
        update = variant_update(first_id) if first_id is not None else None
        cls_name, tok = load(models, base, update)
        pad = tok.pad_token_id
        padded, unpadded = [], []
        for s in texts:
            kwargs = {"add_special_tokens": True} if "tokenizer_3" in folder else {}
            row = tok([s], padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt",
                      **kwargs).input_ids[0].tolist()
            assert len(row) == MAX_LENGTH
            while row and row[-1] == pad:
                row.pop()
            padded.append(row)
            unpadded.append(tok(s).input_ids)
        result["tokenizers"][folder] = {
            "folder": base,
            "config_update": update,
            "class": cls_name,
            "implementation": type(tok).__module__ + "." + type(tok).__name__,
            "pad_id": pad,
            "padded": padded,
            "unpadded": unpadded,
        }
        print(folder, cls_name, type(tok).__name__, "pad", pad, file=sys.stderr)
    with open(os.path.join(out_dir, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=True, indent=0)
        f.write("\n")
    with gzip.GzipFile(os.path.join(out_dir, "goldens.json.gz"), "wb", mtime=0) as f:
        f.write(json.dumps(result, separators=(",", ":")).encode("utf-8"))
    print(len(texts), "strings", file=sys.stderr)


if __name__ == "__main__":
    main()

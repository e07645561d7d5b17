"""The tiny MGIE fixture (tests/Elect.Tests/Data/mgie-tiny/) and its goldens (mgie-tiny-golden.safetensors,
mgie-tiny-manifest.json, mgie-tiny-tokenizer.json beside it), from the reference code.

Layout written (the published _ckpt layout MGIE's demo and ELECT's mgie_module.py read, shrunk):
  mgie-tiny/LLaVA-7B-v1/              config.json (model_type llava + LLaVA's mm_* keys), generation_config.json,
                                      tokenizer.model (a SentencePiece BPE trained here with LLaMA's settings on text
                                      written here), tokenizer_config.json / special_tokens_map.json / added_tokens.json
                                      as LLaVA-7B-v1 has them, two torch.save shards + pytorch_model.bin.index.json (fp16,
                                      with the rotary inv_freq buffers the 2023 checkpoints carry, and model.mm_projector.*)
  mgie-tiny/LLaVA-7B-v1-safetensors/  the same weights as safetensors shards + model.safetensors.index.json
  mgie-tiny/clip-vit-large-patch14/   a tiny CLIPModel (vision 32 wide, 3 layers, 56 px, patch 14 -> 16 patches),
                                      preprocessor_config.json in the published (old) format
  mgie-tiny/mgie_7b/mllm.pt           model.embed_tokens.weight, lm_head.weight [V+11, 64], edit_head.* (MGIE's EditMapper
                                      at tiny sizes), emb [1, 8, 64]; fp16
  mgie-tiny/mgie_7b/unet.pt           fp16 seeded random state dict with the keys/shapes of ip2p-tiny's UNet
  mgie-tiny/inputs/                   two synthetic PNGs and instructions.txt

The reference path is ELECT's mgie_module.py (MGIE_module.__init__ + generate_prompt), run as written except:
  * mgie_llava.py's LlavaLlamaForCausalLM cannot be built on transformers 5.12 (its constructor downloads SD 1.5, and
    it overrides LlamaModel.forward with 4.28's signature). Its forward is re-expressed below (TinyLlava) over 5.12's
    LlamaForCausalLM, line by line: embed_tokens, then - when images are given and input_ids has more than one column,
    as the original's `input_ids.shape[1] != 1` - the vision tower with output_hidden_states, hidden_states[
    mm_vision_select_layer][:, 1:], model.mm_projector, and the splice after each <im_start> with the original's two
    checks (as many <im_start> as <im_end>; <im_end> right after the patches); then LlamaModel on inputs_embeds.
    Departures: the original's `dummy_image_features = mm_projector(zeros(256, 1024))` (only used, times 0, for a sample
    without <im_patch>; it needs mm_hidden_size 1024) is left out; the LLaVA folder is loaded with load_state_dict from
    the shards (strict apart from the rotary inv_freq buffers 5.12 no longer stores), not from_pretrained of a class
    registered for model_type llava (5.12 maps "llava" to its own LlavaConfig).
  * CPU float32 with the fp16-stored weights (the reference runs fp16 on CUDA).
  * `p = ...index(32003)...`: 32003 is the id of [IMG0] in the published tokenizer (LLaMA 32000 + 3 image tokens);
    here it is the tokenizer's [IMG0] id (V+3), found the same way.
The lm_head rows of mllm.pt are chosen so that, from the last prompt token ':', the tiny LLM writes CHAIN
(" make it blue"), then [IMG0]..[IMG7], then '.', then </s> (each row is the unit embedding of the token before it,
scaled; the residual stream carries the current token's embedding to the last layer): case 0 takes MGIE's
[IMG0]-found path. Case 1's instruction contains " make it blue", so no_repeat_ngram_size=3 bans the chain's third
token and the generation runs on without [IMG0] (the len(hid)-9 fallback).

Run: REF_MOUNTS=/work/shared REF_PYTHONPATH=/tmp/refsrc/elect:/tmp/refsrc/llava /work/shared/reference/py scripts/goldens/mgie.py
"""
import io
import json
import os
import random
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn
import sentencepiece as spm
from PIL import Image
from safetensors.torch import save_file, load_file
import transformers
from transformers import (AutoTokenizer, CLIPConfig, CLIPModel, CLIPImageProcessor, CLIPVisionModel, GenerationConfig,
                          LlamaConfig, LlamaForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tokenizer_corpus  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(REPO, "tests", "Elect.Tests", "Data")
OUT = os.path.join(DATA, "mgie-tiny")
UNET_FIXTURE = "/work/shared/fixtures/models/ip2p-tiny/unet/diffusion_pytorch_model.safetensors"

V = 1000          # SentencePiece vocabulary; LLaVA adds <im_patch>, <im_start>, <im_end> (V..V+2), MGIE [IMG0..7] (V+3..V+10)
HID = 64
CHAIN = " make it blue"
INSTRUCTIONS = ["turn the sky into a starry night", "please make it blue and shiny"]

DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"
DEFAULT_IM_START_TOKEN = "<im_start>"
DEFAULT_IM_END_TOKEN = "<im_end>"


# ---------------------------------------------------------------- the tokenizer
def training_text():
    rng = random.Random(14)
    lines = list(tokenizer_corpus.HAND_WRITTEN) + tokenizer_corpus.composed(rng, 6000)
    sysmsg = ("A chat between a curious user and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the user's questions.")
    for i in range(300):
        inst = rng.choice(lines)
        lines.append(f"{sysmsg} USER: what will this image be like if '{inst}'")
        lines.append(f"The photo shows {rng.choice(tokenizer_corpus.SUBJECTS)} {rng.choice(tokenizer_corpus.SCENES)}, "
                     f"{rng.randint(0, 2024)} {rng.choice(tokenizer_corpus.COLORS)} details.")
    lines += [f"{a} + {b} = {a + b}; 0x{a:04x} {b}.{a}%" for a, b in zip(range(0, 3000, 7), range(11, 9000, 21))]
    return lines


def train_tokenizer(folder):
    path = "/tmp/mgie_spm_corpus.txt"
    with open(path, "w", encoding="utf-8") as f:
        for line in training_text():
            f.write(line.replace("\n", " ") + "\n")
    prefix = "/tmp/mgie_spm"
    # LLaMA's trainer_spec (its tokenizer.model), vocabulary shrunk
    spm.SentencePieceTrainer.train(
        input=path, model_prefix=prefix, model_type="bpe", vocab_size=V, character_coverage=0.99995,
        split_by_unicode_script=True, split_by_number=True, split_by_whitespace=True, split_digits=True,
        treat_whitespace_as_suffix=False, allow_whitespace_only_pieces=True, byte_fallback=True,
        max_sentencepiece_length=16, vocabulary_output_piece_score=True, hard_vocab_limit=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_surface=" \u2047 ", normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, num_threads=1, seed_sentencepiece_size=100000,
        shuffle_input_sentence=False, self_test_sample_size=0, minloglevel=2)
    shutil.copy(prefix + ".model", os.path.join(folder, "tokenizer.model"))

    def tok(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
                "single_word": False}
    # as transformers 4.28 saved them for LLaVA-7B-v1 (LlamaTokenizer, no pad token)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": tok("<s>"),
                   "clean_up_tokenization_spaces": False, "eos_token": tok("</s>"), "model_max_length": 2048,
                   "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
                   "tokenizer_class": "LlamaTokenizer", "unk_token": tok("<unk>")}, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump({k: {f: v for f, v in tok(c).items() if f != "__type"}
                   for k, c in [("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>")]}, f, indent=2)
    with open(os.path.join(folder, "added_tokens.json"), "w") as f:
        json.dump({"<im_end>": V + 2, "<im_patch>": V, "<im_start>": V + 1}, f, indent=2)


def load_tokenizer(folder):
    """MGIE_module.__init__'s tokenizer steps."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    tokenizer.add_tokens(["[IMG0]", "[IMG1]", "[IMG2]", "[IMG3]", "[IMG4]", "[IMG5]", "[IMG6]", "[IMG7]"], special_tokens=True)
    return tokenizer


def tokenizer_goldens(tokenizer):
    strings = tokenizer_corpus.corpus()
    picked = strings[::6][:380]
    picked += [
        "", " ", "  ", "\n", "hello", " hello", "hello world", "Hello  world\n\tx", "12345 and 3.14159",
        "[IMG0]", "[IMG3]", "a [IMG3] b", "x[IMG0][IMG1][IMG2][IMG3][IMG4][IMG5][IMG6][IMG7]y", "<s>", "</s>",
        "a</s>b", "<s> USER: hi</s>", "<unk>", "<im_patch>" * 5, "<im_start>" + "<im_patch>" * 16 + "<im_end>",
        "see\n<im_start><im_patch><im_patch><im_end> ASSISTANT:", "[IMG", "[IMG8]", "IMG0", "<im_patch", "café naïve",
        "日本語のテキスト", "emoji 🙂👍🏽 done", "tab\tand\r\nnewline", "   leading spaces", "trailing spaces   ",
        "a  b   c    d", "▁already▁metaspace", "\u2047 unk surface", "Ω≈ç√∫", "zero\u200bwidth", "ASSISTANT: sure.",
    ]
    encoded = [tokenizer(s)["input_ids"] for s in picked]
    # decode: some encodings, random id lists over the whole vocabulary (bytes, specials, [IMG]s), byte-fallback pieces
    rng = random.Random(5)
    n = len(tokenizer)
    decode_ids = [encoded[i] for i in range(0, len(encoded), 9)]
    decode_ids += [[rng.randrange(n) for _ in range(rng.randint(1, 30))] for _ in range(60)]
    decode_ids += [[1, 3, 4, 5], [3 + 0xE6, 3 + 0x97, 3 + 0xA5], [3 + 0xE6, 3 + 0x97], [2, 2, 1], [V + 3, V + 4, 2],
                   [0], [1], [], [V, V, V + 1, V + 2]]
    decoded = [tokenizer.decode(ids) for ids in decode_ids]
    return {"encode": [{"text": s, "ids": ids} for s, ids in zip(picked, encoded)],
            "decode": [{"ids": ids, "text": t} for ids, t in zip(decode_ids, decoded)]}


# ---------------------------------------------------------------- the vision tower
def make_clip(folder):
    torch.manual_seed(1)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=512, hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
                         max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=3, image_size=56,
                           patch_size=14, hidden_act="quick_gelu"),
        projection_dim=32)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.half().save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        # the published openai/clip-vit-large-patch14 file, sizes 224 -> 56
        json.dump({"crop_size": 56, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                   "feature_extractor_type": "CLIPFeatureExtractor",
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                   "resample": 3, "size": 56}, f, indent=2)


# ---------------------------------------------------------------- MGIE's EditMapper, tiny
class EditMapper(nn.Module):
    """mgie_llava.py's EditMapper with 4096 -> 64, 512 -> 32, 4+4 layers -> 2+2, 2048 -> 64, 768 -> 32."""

    def __init__(self):
        super().__init__()
        self.llm2hid = nn.Linear(HID, 32)
        self.query = nn.Parameter(torch.randn(1, 77, 32))
        self.mapper = nn.Transformer(batch_first=True, norm_first=True,
                                     d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                     dim_feedforward=64, dropout=0.0)
        self.hid2feat = nn.Linear(32, 32)

    def forward(self, llm, emb):
        hid = self.llm2hid(llm + emb)
        hid = self.mapper(hid, self.query.repeat(llm.shape[0], 1, 1))
        feat = self.hid2feat(hid)
        return feat


# ---------------------------------------------------------------- LLaVA over transformers 5.12
class TinyLlava(LlamaForCausalLM):
    """mgie_llava.py's LlavaLlamaForCausalLM (LlavaLlamaModel.forward's image splice) re-expressed over 5.12."""

    def __init__(self, config):
        super().__init__(config)
        self.model.mm_projector = nn.Linear(config.mm_hidden_size, config.hidden_size)
        self.edit_head = EditMapper()
        self.vision_tower = [None]

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, inputs_embeds=None, images=None, **kwargs):
        if inputs_embeds is None and input_ids is not None and images is not None and input_ids.shape[1] != 1:
            inputs_embeds = self.model.embed_tokens(input_ids)
            vision_tower = self.vision_tower[0]
            with torch.no_grad():
                image_forward_outs = vision_tower(images.to(vision_tower.dtype), output_hidden_states=True)
                select_hidden_state_layer = getattr(self.config, "mm_vision_select_layer", -1)
                select_hidden_state = image_forward_outs.hidden_states[select_hidden_state_layer]
                image_features = select_hidden_state[:, 1:].to(images.dtype)
            self._vision_select = select_hidden_state[:, 1:]
            image_features = self.model.mm_projector(image_features)
            self._image_features = image_features
            vc = vision_tower.config
            new_input_embeds = []
            cur_image_idx = 0
            for cur_input_ids, cur_input_embeds in zip(input_ids, inputs_embeds):
                if (cur_input_ids == vc.im_patch_token).sum() == 0:
                    new_input_embeds.append(cur_input_embeds)   # departure: no `+ (0. * dummy_image_features).sum()`
                    cur_image_idx += 1
                    continue
                assert vc.use_im_start_end
                if (cur_input_ids == vc.im_start_token).sum() != (cur_input_ids == vc.im_end_token).sum():
                    raise ValueError("The number of image start tokens and image end tokens should be the same.")
                image_start_tokens = torch.where(cur_input_ids == vc.im_start_token)[0]
                for image_start_token_pos in image_start_tokens:
                    cur_image_features = image_features[cur_image_idx].to(device=cur_input_embeds.device)
                    num_patches = cur_image_features.shape[0]
                    if cur_input_ids[image_start_token_pos + num_patches + 1] != vc.im_end_token:
                        raise ValueError("The image end token should follow the image start token.")
                    cur_new_input_embeds = torch.cat((cur_input_embeds[:image_start_token_pos + 1], cur_image_features,
                                                      cur_input_embeds[image_start_token_pos + num_patches + 1:]), dim=0)
                    cur_image_idx += 1
                new_input_embeds.append(cur_new_input_embeds)
            inputs_embeds = torch.stack(new_input_embeds, dim=0)
            self._prompt_embeds_in = inputs_embeds
            input_ids = None
        if inputs_embeds is not None:
            input_ids = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
                               inputs_embeds=inputs_embeds, **kwargs)


def llava_config():
    return {
        "_name_or_path": "LLaVA-7B-v1", "architectures": ["LlavaLlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
        "freeze_mm_mlp_adapter": False, "hidden_act": "silu", "hidden_size": HID, "initializer_range": 0.02,
        "intermediate_size": 128, "max_position_embeddings": 2048, "max_sequence_length": 2048,
        "mm_hidden_size": 32, "mm_use_im_start_end": True, "mm_vision_select_layer": -2,
        "mm_vision_tower": "openai/clip-vit-large-patch14", "model_type": "llava", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 4, "pad_token_id": 0, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "sep_image_conv_front": False, "tie_word_embeddings": False, "torch_dtype": "float16",
        "transformers_version": "4.28.0.dev0", "tune_mm_mlp_adapter": False, "use_cache": True, "use_mm_proj": True,
        "vocab_size": V + 3,
    }


def llama_config(cfg):
    keep = {k: cfg[k] for k in ["bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "hidden_size", "intermediate_size",
                                "max_position_embeddings", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
                                "rms_norm_eps", "rope_theta", "vocab_size", "tie_word_embeddings", "mm_hidden_size",
                                "mm_vision_select_layer", "mm_use_im_start_end", "mm_vision_tower", "use_mm_proj"]}
    return LlamaConfig(**keep)


def make_llava(folder, st_folder):
    cfg = llava_config()
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
                   "transformers_version": "4.28.0.dev0"}, f, indent=2)
    torch.manual_seed(2)
    model = TinyLlava(llama_config(cfg))
    sd = {}
    g = torch.Generator().manual_seed(3)
    for k, v in model.state_dict().items():
        if k.startswith("edit_head."):
            continue
        if k.endswith("norm.weight"):
            t = 1 + 0.1 * torch.randn(v.shape, generator=g)
        elif k == "model.embed_tokens.weight":
            t = torch.randn(v.shape, generator=g)
        elif k == "lm_head.weight":
            t = 0.3 * torch.randn(v.shape, generator=g)
        elif k.endswith(".bias"):
            t = 0.02 * torch.randn(v.shape, generator=g)
        else:
            t = 0.03 * torch.randn(v.shape, generator=g)
        sd[k] = t.half()
    # the 2023 checkpoints carry each layer's rotary inv_freq buffer
    inv = (1.0 / (10000.0 ** (torch.arange(0, HID // 4, 2).float() / (HID // 4))))
    for i in range(cfg["num_hidden_layers"]):
        sd[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv.clone()
    keys = sorted(sd)
    shards = [[k for k in keys if k.startswith("model.layers.0.") or k == "model.embed_tokens.weight"], None]
    shards[1] = [k for k in keys if k not in shards[0]]
    index = {"metadata": {"total_size": sum(sd[k].numel() * sd[k].element_size() for k in keys)}, "weight_map": {}}
    st_index = {"metadata": {"total_size": index["metadata"]["total_size"]}, "weight_map": {}}
    for i, ks in enumerate(shards):
        name = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({k: sd[k] for k in ks}, os.path.join(folder, name))
        st_name = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: sd[k].contiguous() for k in ks}, os.path.join(st_folder, st_name), metadata={"format": "pt"})
        for k in ks:
            index["weight_map"][k] = name
            st_index["weight_map"][k] = st_name
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(st_folder, "model.safetensors.index.json"), "w") as f:
        json.dump(st_index, f, indent=2)


def make_mllm(folder, tokenizer, llava_dir):
    """mllm.pt: embed_tokens/lm_head [V+11, 64] (the LLaVA rows, then 8 [IMG] rows), the tiny edit_head, emb."""
    sd = {}
    for i in (1, 2):
        sd.update(torch.load(os.path.join(llava_dir, f"pytorch_model-0000{i}-of-00002.bin"), map_location="cpu"))
    g = torch.Generator().manual_seed(4)
    n = len(tokenizer)
    emb = torch.cat([sd["model.embed_tokens.weight"].float(), torch.randn(n - (V + 3), HID, generator=g)], 0)
    emb = emb + 0.05 * torch.randn(emb.shape, generator=g)   # MGIE fine-tunes the whole embedding table
    head = torch.cat([sd["lm_head.weight"].float(), 0.3 * torch.randn(n - (V + 3), HID, generator=g)], 0)
    head = head + 0.01 * torch.randn(head.shape, generator=g)
    emb, head = emb.half().float(), head.half().float()
    # the chain: after the last prompt token ':' -> CHAIN tokens -> [IMG0..7] -> '.' -> </s>
    colon = tokenizer(" ASSISTANT:", add_special_tokens=False)["input_ids"][-1]   # every prompt's last token
    chain = tokenizer(CHAIN, add_special_tokens=False)["input_ids"]
    img = tokenizer.convert_tokens_to_ids([f"[IMG{i}]" for i in range(8)])
    dot = tokenizer.convert_tokens_to_ids(".")
    order = [colon] + chain + img + [dot, 2]
    assert len(set(order)) == len(order), order
    for prev, nxt in zip(order[:-1], order[1:]):
        e = emb[prev]
        head[nxt] = 2.5 * e / e.norm()
    torch.manual_seed(5)
    edit = EditMapper()
    with torch.no_grad():
        for p in edit.parameters():
            p.copy_(p.half().float())
    mllm = {"model.embed_tokens.weight": emb.half(), "lm_head.weight": head.half()}
    for k, v in edit.state_dict().items():
        mllm["edit_head." + k] = v.half()
    mllm["emb"] = emb[-8:].unsqueeze(0).half().clone()
    torch.save(mllm, os.path.join(folder, "mllm.pt"))
    return {"chain": chain, "colon": colon, "dot": dot}


def make_unet(folder):
    ref = load_file(UNET_FIXTURE)
    g = torch.Generator().manual_seed(6)
    out = {}
    for k in sorted(ref):
        shape = ref[k].shape
        if len(shape) == 1 and "norm" in k and k.endswith(".weight"):
            t = 1 + 0.05 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            t = torch.randn(shape, generator=g) * (0.02 if len(shape) == 1 else 1.0 / max(fan_in, 1) ** 0.5)
        out[k] = t.half()
    torch.save(out, os.path.join(folder, "unet.pt"))


def make_inputs(folder):
    rng = np.random.default_rng(7)
    for name, (w, h) in [("scene0.png", (128, 128)), ("scene1.png", (192, 128))]:
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 2) % 256, (yy * 3 + xx) % 256, ((xx - yy) * 5) % 256], 2) + rng.normal(0, 20, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8)).save(os.path.join(folder, name))
    with open(os.path.join(folder, "instructions.txt"), "w") as f:
        f.write("\n".join(INSTRUCTIONS) + "\n")


def remove_alter(s):  # mgie_module.py's, verbatim
    if 'ASSISTANT:' in s: s = s[s.index('ASSISTANT:') + 10:].strip()
    if '</s>' in s: s = s[:s.index('</s>')].strip()
    if 'alternative' in s.lower(): s = s[:s.lower().index('alternative')]
    if '[IMG0]' in s: s = s[:s.index('[IMG0]')]
    s = '.'.join([s.strip() for s in s.split('.')[:2]])
    if s[-1] != '.': s += '.'
    return s.strip()


def main():
    from LLaVA_conv import conv_templates
    for sub in ["LLaVA-7B-v1", "LLaVA-7B-v1-safetensors", "clip-vit-large-patch14", "mgie_7b", "inputs"]:
        p = os.path.join(OUT, sub)
        if os.path.isdir(p):
            shutil.rmtree(p)
        os.makedirs(p)
    llava_dir, clip_dir, ckpt = os.path.join(OUT, "LLaVA-7B-v1"), os.path.join(OUT, "clip-vit-large-patch14"), os.path.join(OUT, "mgie_7b")
    train_tokenizer(llava_dir)
    make_clip(clip_dir)
    make_llava(llava_dir, os.path.join(OUT, "LLaVA-7B-v1-safetensors"))
    make_inputs(os.path.join(OUT, "inputs"))
    make_unet(ckpt)

    # ---- MGIE_module.__init__ (ckpt_dir = OUT), re-expressed as the module docstring says
    tokenizer = load_tokenizer(llava_dir)
    chain_info = make_mllm(ckpt, tokenizer, llava_dir)
    cfg = llava_config()
    model = TinyLlava(llama_config(cfg))
    sd = {}
    for i in (1, 2):
        sd.update(torch.load(os.path.join(llava_dir, f"pytorch_model-0000{i}-of-00002.bin"), map_location="cpu"))
    sd = {k: v for k, v in sd.items() if not k.endswith("rotary_emb.inv_freq")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("edit_head.") for k in missing), (missing, unexpected)
    model.generation_config = GenerationConfig.from_pretrained(llava_dir)
    image_processor = CLIPImageProcessor.from_pretrained(clip_dir)
    model.resize_token_embeddings(len(tokenizer))
    mllm = torch.load(os.path.join(ckpt, "mllm.pt"), map_location="cpu")
    missing, unexpected = model.load_state_dict(mllm, strict=False)
    print("mllm.pt unexpected:", unexpected)
    mm_use_im_start_end = getattr(model.config, "mm_use_im_start_end", False)
    tokenizer.add_tokens([DEFAULT_IMAGE_PATCH_TOKEN], special_tokens=True)
    if mm_use_im_start_end:
        tokenizer.add_tokens([DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN], special_tokens=True)
    vision_tower = CLIPVisionModel.from_pretrained(clip_dir, torch_dtype=torch.float32).eval()
    model.vision_tower[0] = vision_tower
    vision_config = vision_tower.config
    vision_config.im_patch_token = tokenizer.convert_tokens_to_ids([DEFAULT_IMAGE_PATCH_TOKEN])[0]
    vision_config.use_im_start_end = mm_use_im_start_end
    if mm_use_im_start_end:
        vision_config.im_start_token, vision_config.im_end_token = tokenizer.convert_tokens_to_ids([DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN])
    image_token_len = (vision_config.image_size // vision_config.patch_size) ** 2
    model = model.float().eval()
    EMB = mllm["emb"].float()
    img0 = tokenizer.convert_tokens_to_ids("[IMG0]")
    tensors = {}
    with torch.inference_mode():
        NULL = model.edit_head(torch.zeros(1, 8, HID), EMB)
    tensors["null_prompt_embeds"] = NULL.contiguous()

    manifest = {"vocab": V, "len_tokenizer": len(tokenizer), "img0_id": img0,
                "im_patch_id": vision_config.im_patch_token, "im_start_id": vision_config.im_start_token,
                "im_end_id": vision_config.im_end_token, "image_token_len": image_token_len,
                "chain_text": CHAIN, "chain_ids": chain_info["chain"], "transformers": transformers.__version__,
                "torch": torch.__version__, "image_processor": type(image_processor).__name__,
                "tokenizer_class": type(tokenizer).__name__, "cases": []}
    print("image processor:", type(image_processor).__name__, "tokenizer:", type(tokenizer).__name__)

    # ---- generate_prompt, per case
    for k, (name, instruction) in enumerate(zip(["scene0.png", "scene1.png"], INSTRUCTIONS)):
        input_image = Image.open(os.path.join(OUT, "inputs", name)).convert("RGB")
        img = image_processor.preprocess(input_image, return_tensors='pt')['pixel_values'][0]
        inst_txt = instruction
        txt = "what will this image be like if '%s'" % (inst_txt)
        txt = txt + '\n' + DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_PATCH_TOKEN * image_token_len + DEFAULT_IM_END_TOKEN
        conv = conv_templates['vicuna_v1_1'].copy()
        conv.append_message(conv.roles[0], txt), conv.append_message(conv.roles[1], None)
        txt = conv.get_prompt()
        prompt = txt
        txt = tokenizer(txt)
        txt, mask = torch.as_tensor(txt['input_ids']), torch.as_tensor(txt['attention_mask'])
        with torch.inference_mode():
            out = model.generate(txt.unsqueeze(dim=0), images=img.unsqueeze(dim=0), attention_mask=mask.unsqueeze(dim=0),
                                 do_sample=False, max_new_tokens=96, num_beams=1, no_repeat_ngram_size=3,
                                 return_dict_in_generate=True, output_hidden_states=True)
            seq = out['sequences'][0]
            out_l, hid = seq.tolist(), torch.cat([x[-1] for x in out['hidden_states']], dim=1)[0]
            found = img0 in out_l
            p = min(out_l.index(img0) - 1 if img0 in out_l else len(hid) - 9, len(hid) - 9)
            hid_sel = hid[p:p + 8]
            decoded = tokenizer.decode(out_l)
            expressive = remove_alter(decoded)
            emb = model.edit_head(hid_sel.unsqueeze(dim=0), EMB)
            # a one-pass forward of the whole prompt (logits + every layer's hidden states) for the decoder test
            one = model(input_ids=txt.unsqueeze(0), images=img.unsqueeze(0), attention_mask=mask.unsqueeze(0),
                        output_hidden_states=True, use_cache=False)
        tensors[f"case{k}.input_ids"] = txt.contiguous()
        tensors[f"case{k}.pixel_values"] = img.unsqueeze(0).contiguous()
        tensors[f"case{k}.vision_select"] = model._vision_select.contiguous()
        tensors[f"case{k}.image_features"] = model._image_features.contiguous()
        tensors[f"case{k}.inputs_embeds"] = model._prompt_embeds_in.contiguous()
        tensors[f"case{k}.sequences"] = seq.contiguous()
        tensors[f"case{k}.hidden"] = hid.contiguous()
        tensors[f"case{k}.img_hidden"] = hid_sel.contiguous()
        tensors[f"case{k}.prompt_embeds"] = emb.contiguous()
        tensors[f"case{k}.logits"] = one.logits[0].contiguous()
        for i, h in enumerate(one.hidden_states):
            tensors[f"case{k}.prompt_hidden_states.{i}"] = h[0].contiguous()
        case = {"image": name, "instruction": instruction, "prompt": prompt, "prompt_length": len(txt),
                "generated_text": decoded, "expressive_instruction": expressive, "img0_found": found, "p": p,
                "sequence_length": len(out_l)}
        manifest["cases"].append(case)
        print(json.dumps(case, ensure_ascii=False)[:600])
        print("generated:", out_l[len(txt):])
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(DATA, "mgie-tiny-golden.safetensors"))
    with open(os.path.join(DATA, "mgie-tiny-manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
    with open(os.path.join(DATA, "mgie-tiny-tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_goldens(tokenizer), f, ensure_ascii=False)


if __name__ == "__main__":
    # LLaVA's conversation.py at MGIE's pinned commit (REF_PYTHONPATH holds /tmp/refsrc/llava)
    import importlib.util
    spec = importlib.util.spec_from_file_location("LLaVA_conv", "/tmp/refsrc/llava/llava/conversation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["LLaVA_conv"] = mod
    main()

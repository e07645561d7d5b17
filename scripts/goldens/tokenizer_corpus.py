"""Deterministic tokenizer parity corpus (>= 2,000 strings) for scripts/goldens/make_tokenizer_goldens.py.

Editing instructions in the style of PIE-Bench / MagicBrush composed from templates and word lists,
hand-written instructions, punctuation runs, every printable ASCII symbol alone and inside words,
CJK, emoji (ZWJ sequences, skin tones, flags, keycaps), combining marks, whitespace runs, literal
special tokens of both tokenizer families, HTML entities, upper case and over-long strings.
Only the standard library is used; the order of the list is part of the goldens.
"""

import random

SUBJECTS = ["cat", "dog", "man", "woman", "girl", "boy", "car", "house", "tree", "bird", "horse", "mushroom",
            "bear", "flower", "cup", "bicycle", "boat", "mountain", "river", "sky", "table", "chair", "lamp",
            "banana", "apple", "clock", "painting", "bridge", "castle", "robot", "statue", "umbrella"]
TARGETS = ["tiger", "lion", "zebra", "golden retriever", "teddy bear", "sports car", "wooden cabin", "palm tree",
           "parrot", "unicorn", "red mushroom", "panda", "rose", "glass of wine", "motorcycle", "sailboat",
           "volcano", "waterfall", "starry night", "marble table", "throne", "neon sign", "pineapple",
           "pumpkin", "hourglass", "oil painting", "rainbow", "spaceship", "snowman", "jellyfish", "dragon"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "black", "white", "golden", "silver",
          "turquoise", "crimson", "pastel", "neon"]
STYLES = ["Van Gogh", "Picasso", "Monet", "ukiyo-e", "pixel art", "watercolor", "oil painting", "pencil sketch",
          "cyberpunk", "steampunk", "anime", "Pixar", "low-poly", "art deco", "film noir", "vaporwave",
          "Studio Ghibli", "baroque", "pop art", "claymation"]
SCENES = ["at night", "in winter", "during a sunset", "under the rain", "on the moon", "in a desert",
          "underwater", "in a forest", "on a beach", "in the snow", "in autumn", "at dawn", "in a foggy city"]
MATERIALS = ["wood", "glass", "metal", "gold", "ice", "stone", "paper", "lego bricks", "chocolate", "marble"]
ACCESSORIES = ["a hat", "sunglasses", "a scarf", "a crown", "a bow tie", "a backpack", "a necklace",
               "a red cape", "headphones", "a mask"]
EMOTIONS = ["smile", "cry", "look angry", "look surprised", "laugh", "look sad", "wink"]

TEMPLATES = [
    "Replace the {s} with a {t}",
    "replace the {s} with a {t}",
    "Change the {s} into a {t}",
    "turn the {s} into a {t}",
    "make the {s} {c}",
    "Make the {s} look like it is made of {m}",
    "Add {a} to the {s}",
    "put {a} on the {s}",
    "remove the {s}",
    "Remove the {s} from the picture",
    "make it look like a {st} painting",
    "Transform the image into {st} style",
    "make the scene {sc}",
    "Change the background to {sc}",
    "let the {s} {e}",
    "Make the {s} {e}",
    "What if the {s} was a {t}?",
    "what would it look like if the {s} were {c}?",
    "Have the {s} hold a {t}",
    "Change the color of the {s} to {c}",
    "make the {s}'s eyes {c}",
    "Add a {t} next to the {s}",
    "swap the {s} for a {t}, keep everything else",
    "Turn the {s} {c} and the sky {c2}",
    "make the {s} bigger",
    "Make the {s} smaller and {c}",
    "give the {s} {a}",
    "The {s} should be a {t}.",
    "add snow on the {s}",
    "Make the photo look {sc}",
    "{s} -> {t}",
    "a {c} {t} instead of the {s}",
    "Replace the {s} with a {t}!",
    "replace the {s} with a {t}?!",
    "Make the {s} look stormy?! add lightning",
    "put the {s} {sc}!!!",
    "make the {s} {c}... and add {a}",
    "Turn the {s} into {m}; keep the background",
    "change the {s} (the one on the left) into a {t}",
    "\"{s}\" -> \"{t}\"",
    "Make the {s} 3x bigger & {c}",
    "add 2 {t}s behind the {s}",
    "MAKE THE {S} {C}",
    "Make The {S} Look Like A {T}",
]


def composed(rng, n):
    out = []
    for i in range(n):
        tpl = TEMPLATES[i % len(TEMPLATES)]
        s, t, c, c2 = rng.choice(SUBJECTS), rng.choice(TARGETS), rng.choice(COLORS), rng.choice(COLORS)
        out.append(tpl.format(s=s, t=t, c=c, c2=c2, m=rng.choice(MATERIALS), a=rng.choice(ACCESSORIES),
                              st=rng.choice(STYLES), sc=rng.choice(SCENES), e=rng.choice(EMOTIONS),
                              S=s.upper(), C=c.upper(), T=t.title()))
    return out


HAND_WRITTEN = [
    "make the sky look stormy?! add lightning",
    "make the sky look stormy ?! add lightning",
    "style?!",
    "style!",
    "style !",
    "! style",
    "!",
    "!!",
    "!!!",
    "?!",
    "!?",
    "...!?",
    "?!?!",
    "wow!!!!!!",
    "Hello, world!",
    "Make it pop!!! Seriously!",
    "add a sign that says \"STOP!\"",
    "Replace the cat with a bear",
    "make it look like a Van Gogh painting",
    "Add fireworks, 4k, HDR... ultra-detailed",
    "  multiple   spaces\tand\nnewlines  ",
    "UPPER case Words",
    "numbers 1234 and 3.14",
    "it's don't we're they've I'm you'll he'd",
    "IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D",
    "it`s it\u2019s it\u2018s",
    "rock'n'roll 'quoted' ''double'' 's 't 're",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 nai\u0308ve",
    "emoji \U0001f431 to \U0001f43b",
    "\u4e2d\u6587 \u5b57\u7b26",
    "",
    " ",
    "aaaaa",
    "make the dog wear a hat \U0001f3a9",
    "turn the image black & white",
    "turn the image black &amp; white",
    "50% darker",
    "price: $5.99 (approx.)",
    "email me@example.com or visit https://example.com/a?b=c&d=e#f",
    "C:\\path\\to\\file.png",
    "a/b/c | d \\ e",
    "x^2 + y^2 = z^2",
    "100\u00b0C and -40\u00b0F",
    "\u00bfQu\u00e9 tal? \u00a1Muy bien!",
    "Stra\u00dfe Gr\u00fc\u00dfe \u1e9e",
    "ΟΔΟΣ οδος ΣΟΦΟΣ Σ σ ς",
    "\u0130stanbul \u0131 I i",
    "\u0391\u0398\u0397\u039d\u0391 \u039c\u03a9\u03a3\u0391\u0399\u039a\u039f",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u05e9\u05dc\u05d5\u05dd \u0639\u0627\u0644\u0645",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca",
    "\u732b\u3092\u72ac\u306b\u5909\u3048\u3066",
    "\u628a\u732b\u6362\u6210\u72d7\uff01",
    "\u628a\u732b\u6362\u6210\u72d7!",
    "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff01\uff1f",
    "\U00020000\U0002a6d6 ext-B",
    "a\U00020000b",
    "\U0001d400\U0001d401 math bold",
    "\u2460\u2461\u2462 \u00bd \u00b2 \u2167",
    "\u0661\u0662\u0663 \u0967\u0968 \uff11\uff12",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f44d\U0001f3fd thumbs",
    "\U0001f469\U0001f3fe\u200d\U0001f52c scientist",
    "\U0001f3f3\ufe0f\u200d\U0001f308 flag",
    "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5 flags",
    "1\ufe0f\u20e3 #\ufe0f\u20e3 keycaps",
    "\u2764\ufe0f \u2764 hearts",
    "\U0001f600\U0001f601\U0001f602\U0001f923",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "soft\u00adhyphen",
    "bom\ufeffinside",
    "tab\there",
    "new\nline",
    "cr\rlf\r\n",
    "nbsp\u00a0here",
    "ideographic\u3000space",
    "em\u2003space thin\u2009space",
    "line\u2028sep para\u2029sep",
    "nel\u0085here",
    "vt\x0bff\x0c",
    "unit\x1fsep\x1egroup",
    "\t\t\n\n   \u00a0\u3000",
    "ctrl\x00\x01\x7f chars",
    "a\u0300\u0301\u0302\u0303 stacked",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dalgo",
    "\u0301leading combining",
    "\u1100\u1161\u11a8 jamo",
    "\u212b \u2126 K\u212a",
    "\ufb01 ligature \ufb02",
    "<|startoftext|>",
    "<|endoftext|>",
    "a<|endoftext|>b",
    "a <|endoftext|> b",
    "<|startoftext|>make it red<|endoftext|>",
    "<|STARTOFTEXT|> upper",
    "<|EndOfText|>",
    "<|endoftext|",
    "<|endoftext|>>", "<<|endoftext|>", "<|<|endoftext|>|>", "<|startoftext|><|endoftext|",
    "</s", "<pad", "<pad>>", "<<pad>", "</s></s", "<extra_id_1", "<extra_id_10>", "<extra_id_1>0",
    " <pad> ", "\t</s>\n", "＜pad＞", "<ｐad>", "▁<pad>▁", "▁▁a",
    "! !", "!\n!", "！", "ǃ", "!́", "́!", "é!", "!é",
    "<|endoftext|><|endoftext|>",
    "<|startoftext|><|endoftext|>",
    "</s>",
    "a</s>a",
    "a </s> a",
    "<pad>",
    "<pad><pad>",
    "x <pad> y",
    "<unk>",
    "an <unk> word",
    "<extra_id_0>",
    "<extra_id_0> the<extra_id_1>",
    "<extra_id_99>",
    "<extra_id_100>",
    "<extra_id_>",
    "<EXTRA_ID_0>",
    "fill <extra_id_0> and <extra_id_1>.",
    "</s></s>",
    "</S> <PAD> <UNK>",
    "<s> </s> <pad> <unk>",
    "&amp; &lt;tag&gt; &quot;q&quot; &#39;s &#x27;",
    "&amp;amp;",
    "&nbsp;&copy;&reg;&trade;&euro;",
    "&eacute;t&eacute;",
    "&notanentity; & ;",
    "<b>bold</b> <i>it</i> <br/>",
    "ALL CAPS INSTRUCTION WITH PUNCTUATION!!!",
    "MiXeD CaSe TeXt",
    "don't remove the dog's collar",
    "the cats' toys",
    "o'clock",
    "I'd've",
    "camelCaseWord snake_case_word kebab-case-word",
    "v1.2.3-beta+build.5",
    "2024-01-01T12:34:56Z",
    "1,000,000.00",
    "####",
    "----",
    "____",
    "~~~~",
    "((()))",
    "[[a]] {{b}}",
    "@@@ $$$ %%%",
    "a cat sat", "concat cats", "the sky  <mask>  is", "x<mask>y", "blue sky!", "\uff21\uff22 and AB", "Cat CAT cat",
    "cat", " cat ", "cat!", "!cat", "_cat_", "cat's", "cat\u0301", "\u00e9cat", "AB", "ab", "aBc AB.", "skyline sky sky",
    "<mask>", "  <mask>", "<mask>  ", "a <sep>  b", "<sep><sep>", "sing ing ring", "ing", "ing!", "<MASK>",
]

WHITESPACE = ["\t", "\n", "\r", "\x0b", "\x0c", "\u00a0", "\u1680", "\u2000", "\u2002", "\u2003", "\u2009",
              "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u0085", "\u180e", "\u200b", "\ufeff"]

SPECIALS = ["<|startoftext|>", "<|endoftext|>", "</s>", "<pad>", "<unk>", "<extra_id_0>", "<extra_id_1>",
            "<extra_id_42>", "<extra_id_99>", "!"]

CJK = "\u732b\u72ac\u5c71\u5ddd\u7a7a\u96e8\u96ea\u82b1\u9ce5\u98a8\u6708\u65e5\u706b\u6c34\u6728\u91d1\u571f\u4eba"
EMOJI = ["\U0001f431", "\U0001f436", "\U0001f308", "\u2600\ufe0f", "\U0001f525", "\U0001f30a", "\U0001f3a8",
         "\U0001f680", "\u2728", "\U0001f44b\U0001f3fb", "\U0001f44b\U0001f3ff", "\U0001f9d1\u200d\U0001f3a8",
         "\U0001f43b\u200d\u2744\ufe0f", "\U0001f1eb\U0001f1f7", "\U0001fae0"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u0327", "\u0323", "\u0331", "\u20dd"]


def generated(rng):
    out = []
    printable = [chr(c) for c in range(0x21, 0x7f)]
    for ch in printable:
        out.append(ch)
        out.append(f"make{ch}it red")
        out.append(f"the {ch} sign")
        out.append(f"cat{ch}{ch}dog")
        out.append(f"{ch}start and end{ch}")
        if not ch.isalnum():
            out.append(f"style{ch}!")
            out.append(f"style!{ch}")
            out.append(ch * 5)
    puncts = "!?.,;:-_'\"*#~()[]{}<>/\\|@$%^&+="
    for _ in range(120):
        run = "".join(rng.choice(puncts) for _ in range(rng.randint(2, 6)))
        out.append(f"{rng.choice(SUBJECTS)}{run} {rng.choice(TARGETS)}")
        out.append(run)
    for ws in WHITESPACE:
        out.append(f"make{ws}it{ws}{ws}red")
        out.append(f"{ws}lead and trail{ws}")
        out.append(ws * 3)
    for _ in range(60):
        ws = "".join(rng.choice(WHITESPACE + [" "]) for _ in range(rng.randint(1, 5)))
        out.append(f"{rng.choice(SUBJECTS)}{ws}{rng.choice(TARGETS)}{ws}!")
    for sp in SPECIALS:
        for fmt in ["{t}", " {t} ", "a{t}b", "a {t} b", "{t}{t}", "make it red{t}", "{t}make it red",
                    "style?{t}", "x{t} {t}y", "{u}", "a{u}b"]:
            out.append(fmt.format(t=sp, u=sp.upper()))
    for i in range(80):
        k = rng.randint(1, 8)
        out.append("".join(rng.choice(CJK) for _ in range(k)) + rng.choice(["", " ", "\u3002", "\uff01", "!"]) +
                   rng.choice(["", " cat", "\u732b"]))
    for i in range(80):
        out.append(f"{rng.choice(SUBJECTS)} {rng.choice(EMOJI)}{rng.choice(['', ' ', '!'])}{rng.choice(EMOJI)}")
    for i in range(60):
        w = rng.choice(SUBJECTS + TARGETS)
        pos = rng.randint(0, len(w))
        out.append(w[:pos] + rng.choice(COMBINING) + w[pos:] + rng.choice(["", "!", " ok"]))
    for i in range(40):
        out.append(rng.choice(["&amp;", "&lt;", "&gt;", "&quot;", "&#33;", "&#x21;", "&nbsp;", "&hellip;"]).join(
            [rng.choice(SUBJECTS), rng.choice(TARGETS)]))
    for n in [20, 40, 74, 75, 76, 77, 78, 80, 120]:
        out.append(" ".join(["cat"] * n))
        out.append("!" * n)
        out.append(" ".join(rng.choice(SUBJECTS) for _ in range(n)))
    for i in range(30):
        n = rng.randint(10, 60)
        out.append(" ".join(composed(rng, n // 8 + 1)))
        out.append(" ".join(rng.choice(SUBJECTS + SPECIALS + EMOJI + list(puncts)) for _ in range(n)))
    return out


def unicode_sweep():
    """Code points across the BMP and the supplementary planes, 12 per string, joined to words (for the
    letter / number / other / whitespace classes and the case mappings), plus the same code points spaced."""
    out = []
    cps = [c for c in range(0xA0, 0x31350, 37) if not (0xD800 <= c < 0xE000) and not (0xE000 <= c < 0xF900)]
    for i in range(0, len(cps), 12):
        chunk = "".join(chr(c) for c in cps[i:i + 12])
        out.append(chunk)
        if (i // 12) % 4 == 0:
            out.append("a " + " ".join(chunk) + " z")
    return out


def mark_orders():
    """Canonical ordering and composition: a base letter with two marks, in both orders, for marks of many
    combining classes and Unicode versions (the reference's NFC tables are older than today's Unicode)."""
    marks = [0x301, 0x316, 0x334, 0x345, 0x5B0, 0x5C2, 0x64B, 0x670, 0x93C, 0x94D, 0xE38, 0xE48, 0x1DCE, 0x1DD2,
             0x1DF6, 0x1DF7, 0x1DF9, 0x1DFA, 0x1DFB, 0x20D0, 0x20E8, 0x302A, 0x302E, 0x3099, 0xFE20, 0x7FD, 0x897,
             0x8CA, 0x8D3, 0x9FE, 0xC3C, 0x1AC1, 0x1ABF, 0x10D24, 0x1E130, 0x16FF0, 0x1D165, 0x1D16D, 0x1E944]
    bases = ["a", "e", "o", "א", "ا", "क", "あ", "か", "ก"]
    out = []
    for i, m in enumerate(marks):
        n = marks[(i * 7 + 3) % len(marks)]
        b = bases[i % len(bases)]
        out.append(b + chr(m) + chr(n) + " " + b + chr(n) + chr(m) + "!")
    for b in ["a", "e", "u", "n", "c", "か", "ᄀ", "ا"]:
        out.append("".join(b + chr(m) for m in [0x300, 0x301, 0x302, 0x303, 0x308, 0x30a, 0x30c, 0x327, 0x3099, 0x653]))
    return out


def corpus():
    rng = random.Random(20250901)
    items = HAND_WRITTEN + composed(rng, 1100) + generated(rng) + unicode_sweep() + mark_orders()
    seen, out = set(), []
    for s in items:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


if __name__ == "__main__":
    c = corpus()
    print(len(c))

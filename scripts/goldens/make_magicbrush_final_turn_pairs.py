"""MagicBrush's final-turn pairing (OSU-NLP-Group/MagicBrush evaluation/image_eval.py) on a small folder layout.

Runs the reference's own get_final_turn_img / get_all_turn_imgs / load_data, taken from image_eval.py by name with `ast`
(the module's imports -- clip, pyiqa, torch -- are not needed by them and not all installed), on empty files named as
edit_cli_single_multi_turn.py names its outputs and as the published test set names its images. Writes the layout and the
reference's pairs as JSON for tests/Elect.Tests (MagicBrushIterativeTests).

    /work/shared/reference/py scripts/goldens/make_magicbrush_final_turn_pairs.py /tmp/refsrc/magicbrush/evaluation/image_eval.py \
        tests/Elect.Tests/Data/magicbrush/final_turn_pairs.json
"""
import ast
import json
import os
import sys
import tempfile

src_path, out_path = sys.argv[1], sys.argv[2]
tree = ast.parse(open(src_path).read())
wanted = {"get_final_turn_img", "get_all_turn_imgs", "load_data"}
module = ast.Module(body=[n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted], type_ignores=[])
ns = {"os": os}
exec(compile(module, src_path, "exec"), ns)


def layout(sid, turns):
    gt = [f"{sid}-input.png"] + [f"{sid}-output{k}.png" for k in range(1, turns + 1)] + [f"{sid}-mask{k}.png" for k in range(1, turns + 1)]
    gen = [f"{sid}_1.png"] + [f"{sid}_iter_{k}.png" for k in range(2, turns + 1)] + [f"{sid}_inde_{k}.png" for k in range(2, turns + 1)]
    return gt, gen


# 30: one turn; 139: three (the test set's most); 7: ten, where a string sort would put iter_9 / output9 last
sessions = {"30": 1, "139": 3, "7": 10}
result = {"sessions": {}, "load_data": {}}
with tempfile.TemporaryDirectory() as tmp:
    for sid, turns in sessions.items():
        gt, gen = layout(sid, turns)
        for root, names in (("gt", gt), ("gen", gen)):
            os.makedirs(os.path.join(tmp, root, sid))
            for n in names:
                open(os.path.join(tmp, root, sid, n), "w").close()
        result["sessions"][sid] = {
            "turns": turns, "gt_files": sorted(gt), "gen_files": sorted(gen),
            "final_gen": os.path.basename(ns["get_final_turn_img"](os.path.join(tmp, "gen", sid), "generated")),
            "final_gt": os.path.basename(ns["get_final_turn_img"](os.path.join(tmp, "gt", sid), "gt")),
        }

    class Args:
        generated_path = os.path.join(tmp, "gen")
        gt_path = os.path.join(tmp, "gt")

    # load_data on the sessions of at most 9 turns: with 10 turns get_all_turn_imgs counts {id}_iter_10 / {id}_inde_10
    # as first edits too ('_1' in the name) and load_data fails (IndexError before its own turn-count check)
    try:
        ns["load_data"](Args)
        result["load_data"]["ten_turns"] = "ok"
    except (ValueError, IndexError) as e:
        result["load_data"]["ten_turns"] = f"{type(e).__name__}: {str(e)[:80]}"
    os.rename(os.path.join(tmp, "gen", "7"), os.path.join(tmp, "gen7"))
    os.rename(os.path.join(tmp, "gt", "7"), os.path.join(tmp, "gt7"))
    all_turn, final_turn = ns["load_data"](Args)
    rel = lambda p: os.path.relpath(p, tmp)
    result["load_data"]["final_turn_pairs"] = sorted([rel(a), rel(b)] for a, b in final_turn)
    result["load_data"]["all_turn_pairs"] = sorted([rel(a), rel(b)] for a, b in all_turn)
    # an iterative-only folder (no {id}_inde_{t}): load_data raises, as get_all_turn_imgs finds fewer outputs than turns
    for n in os.listdir(os.path.join(tmp, "gen", "139")):
        if "inde_" in n:
            os.remove(os.path.join(tmp, "gen", "139", n))
    try:
        ns["load_data"](Args)
        result["load_data"]["iterative_only"] = "ok"
    except (ValueError, IndexError) as e:
        result["load_data"]["iterative_only"] = f"{type(e).__name__}: {str(e)[:80]}"
    result["load_data"]["iterative_only_final_gen"] = os.path.basename(ns["get_final_turn_img"](os.path.join(tmp, "gen", "139"), "generated"))

with open(out_path, "w") as f:
    json.dump(result, f, indent=1, sort_keys=True)
    f.write("\n")
print(json.dumps(result["load_data"], indent=1))

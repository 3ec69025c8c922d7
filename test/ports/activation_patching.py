"""Port of TransformerLens's activation patching (transformer_lens/patching.py generic_activation_patch,
lines 125-235, with its setters layer_pos_patch_setter / layer_head_vector_patch_setter /
layer_pos_head_vector_patch_setter / layer_head_pattern_patch_setter / layer_head_pos_pattern_patch_setter,
lines 242-317), written for tflens's tests: for every (layer, index), one forward of the corrupted tokens
with the clean activation copied in at that index, the metric (mean IOI logit difference at each
prompt's read position) read after it.
stdin: {model, clean, corrupted, mask, reads, io, s, act, by, layers?}
stdout: {values: [layer][index] or [layer][pos][head] for by = head_pos, clean, corrupted}
"""
import json
import sys

import numpy as np

from _gpt2 import GPT2, logit_diff

HOOK = {"resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "attn_out": "hook_attn_out",
        "mlp_out": "hook_mlp_out", "z": "attn.hook_z", "q": "attn.hook_q", "k": "attn.hook_k",
        "v": "attn.hook_v", "pattern": "attn.hook_pattern"}

x = json.load(sys.stdin)
m = GPT2(x["model"])
clean, corrupted, mask = np.asarray(x["clean"]), np.asarray(x["corrupted"]), np.asarray(x["mask"])
reads, io, s = np.asarray(x["reads"]), np.asarray(x["io"]), np.asarray(x["s"])
act, by = x["act"], x["by"]
T = clean.shape[1]


def metric(logits):
    return float(logit_diff(logits, reads, io, s).mean())


cache = {}
clean_metric = metric(m.forward(clean, mask, cache=cache))
corr_metric = metric(m.forward(corrupted, mask))


def setter(index):
    """What TransformerLens's setter for this activation and grouping writes."""
    def set_(corr, cl):
        corr = corr.copy()
        if by == "pos":  # layer_pos_patch_setter: [:, pos, ...]
            corr[:, index[0]] = cl[:, index[0]]
        elif act == "pattern" and by == "head":  # layer_head_pattern_patch_setter: [:, head]
            corr[:, index[0]] = cl[:, index[0]]
        elif act == "pattern":  # layer_head_pos_pattern_patch_setter: [:, head, dest_pos]
            corr[:, index[1], index[0]] = cl[:, index[1], index[0]]
        elif by == "head":  # layer_head_vector_patch_setter: [:, :, head]
            corr[:, :, index[0]] = cl[:, :, index[0]]
        else:  # layer_pos_head_vector_patch_setter: [:, pos, head]
            corr[:, index[0], index[1]] = cl[:, index[0], index[1]]
        return corr
    return set_


values = []
for l in x.get("layers") or range(m.L):
    name = f"blocks.{l}.{HOOK[act]}"
    if by == "pos":
        idx = [(p,) for p in range(T)]
    elif by == "head":
        idx = [(h,) for h in range(m.H)]
    else:
        idx = [(p, h) for p in range(T) for h in range(m.H)]
    row = []
    for index in idx:
        set_ = setter(index)
        row.append(metric(m.forward(corrupted, mask, hooks={name: lambda a, set_=set_: set_(a, cache[name])})))
    if by == "head_pos":
        row = [row[p * m.H:(p + 1) * m.H] for p in range(T)]
    values.append(row)
json.dump({"values": values, "clean": clean_metric, "corrupted": corr_metric}, sys.stdout)

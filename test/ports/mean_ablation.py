"""Port of the IOI authors' circuit extraction by mean ablation (redwoodresearch/Easy-Transformer
easy_transformer/ioi_circuit_extraction.py do_circuit_extraction, lines 265-350, with the per-group means
of experiments.py EasyAblation.compute_mean, lines 424-466), written for tflens's tests. The mean of each
head's output over the reference (ABC) prompts of a template group, position by position, replaces the
output at the ablated (head, position)s; a circuit node is kept only at its positions (turn_keep_into_rmv).
The authors ablate hook_result; it is z @ W_O, linear in z, so ablating z with mean z is the same.
stdin: {model, clean, reference, mask, reads, io, s, ref_groups [B], groups [B],
        configs: [{ablate: [[layer, head, positions [B][k] | null]]} | {keep: [[layer, head, positions | null]]}]}
  'ablate' ablates the listed nodes; 'keep' ablates every head except the listed nodes at their positions.
stdout: {metrics [configs]}
"""
import json
import sys

import numpy as np

from _gpt2 import GPT2, logit_diff

x = json.load(sys.stdin)
m = GPT2(x["model"])
clean, ref, mask = np.asarray(x["clean"]), np.asarray(x["reference"]), np.asarray(x["mask"])
reads, io, s = np.asarray(x["reads"]), np.asarray(x["io"]), np.asarray(x["s"])
ref_groups, groups = np.asarray(x["ref_groups"]), np.asarray(x["groups"])
B, T = clean.shape


def metric(logits):
    return float(logit_diff(logits, reads, io, s).mean())


rc = {}
m.forward(ref, mask, cache=rc)
means = {}
for l in range(m.L):
    z = rc[f"blocks.{l}.attn.hook_z"]
    per_group = {g: z[ref_groups == g].mean(0) for g in set(ref_groups.tolist())}  # compute_mean, mean_by_groups
    means[l] = np.stack([per_group[g] for g in groups])


def removed(config):
    """[L, B, T, H] bool: where z is replaced by its mean."""
    r = np.zeros((m.L, B, T, m.H), dtype=bool)
    if "ablate" in config:
        for l, h, pos in config["ablate"]:
            for i in range(B):
                r[l, i, list(range(T)) if pos is None else pos[i], h] = True
    else:
        r[:] = True
        for l, h, pos in config["keep"]:
            for i in range(B):
                r[l, i, list(range(T)) if pos is None else pos[i], h] = False
    return r


out = []
for config in x["configs"]:
    r = removed(config)
    hooks = {f"blocks.{l}.attn.hook_z": (lambda z, l=l: np.where(r[l][..., None], means[l], z)) for l in range(m.L)}
    out.append(metric(m.forward(clean, mask, hooks=hooks)))
json.dump({"metrics": out}, sys.stdout)

"""Port of attribution patching as TransformerLens's demos/Attribution_Patching_Demo.ipynb computes it for
head vectors (attr_patch_head_vector: sum over batch and d_head of grad * (clean - corrupted), the grad of
the metric taken at the corrupted run), written for tflens's tests. The gradient comes from central finite
differences of the float64 forward: for each (layer, pos, head), the derivative of the metric along the
clean - corrupted direction of that slice of hook_z (all prompts at once) equals that attribution entry.
stdin: {model, clean, corrupted, mask, reads, io, s, eps?}
stdout: {by_pos [L][T][H], clean, corrupted}
"""
import json
import sys

import numpy as np

from _gpt2 import GPT2, logit_diff

x = json.load(sys.stdin)
m = GPT2(x["model"])
clean, corrupted, mask = np.asarray(x["clean"]), np.asarray(x["corrupted"]), np.asarray(x["mask"])
reads, io, s = np.asarray(x["reads"]), np.asarray(x["io"]), np.asarray(x["s"])
eps = x.get("eps", 1e-4)
T = clean.shape[1]


def metric(logits):
    return float(logit_diff(logits, reads, io, s).mean())


cc, kc = {}, {}
clean_metric = metric(m.forward(clean, mask, cache=cc))
corr_metric = metric(m.forward(corrupted, mask, cache=kc))
by_pos = np.zeros((m.L, T, m.H))
for l in range(m.L):
    name = f"blocks.{l}.attn.hook_z"
    delta_all = cc[name] - kc[name]
    for t in range(T):
        for h in range(m.H):
            d = np.zeros_like(delta_all)
            d[:, t, h] = delta_all[:, t, h]
            f = [metric(m.forward(corrupted, mask, hooks={name: lambda z, sgn=sgn: z + sgn * eps * d})) for sgn in (1, -1)]
            by_pos[l, t, h] = (f[0] - f[1]) / (2 * eps)
json.dump({"by_pos": by_pos.tolist(), "clean": clean_metric, "corrupted": corr_metric}, sys.stdout)

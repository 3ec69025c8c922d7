"""Port of the IOI authors' copy score (check_copy_circuit in the paper's experiment notebook,
redwoodresearch/Easy-Transformer, "Copy score" cell), written for tflens's tests on the float64 GPT-2
forward of _gpt2.py. The residual stream after block 0 (blocks.0.hook_resid_post) at the IO, S1 and S2
tokens of each prompt goes through one head's OV circuit: the layer norm of the head's block (the
authors' folded-LN model normalises with blocks[1].ln1, whose weights are folded into W_V; unfolded, that
is the head's own ln_1), W_V and b_V, W_O (no b_O), times sign; then the final layer norm and the tied
unembedding. The score is the share of the 3 x prompts (position, name) pairs whose name (IO at IO, S at S1
and S2) is among the top k logits.
stdin: {model, tokens [B][T], mask, positions {IO, S, S2} [B], io [B], s [B], k}
stdout: {positive [L][H], negative [L][H]}
"""
import json
import sys

import numpy as np

from _gpt2 import GPT2

x = json.load(sys.stdin)
m = GPT2(x["model"])
cache = {}
m.forward(np.asarray(x["tokens"]), np.asarray(x["mask"]), cache=cache)
resid = cache["blocks.0.hook_resid_post"]  # [B, T, d]
pos, io, s, k = x["positions"], x["io"], x["s"], x["k"]
B = len(io)
rows = np.stack([resid[i, pos[w][i]] for w in ("IO", "S", "S2") for i in range(B)])  # [3B, d]
targets = [io[i] for i in range(B)] + [s[i] for i in range(B)] * 2
H, dh, d = m.H, m.dh, m.d
out = {"positive": [], "negative": []}
for l in range(m.L):
    W = m.p(f"h.{l}.attn.c_attn.weight")
    b = m.p(f"h.{l}.attn.c_attn.bias")
    WO = m.p(f"h.{l}.attn.c_proj.weight").reshape(H, dh, d)
    xn = m.ln(rows, f"h.{l}.ln_1")
    for key, sign in (("positive", 1.0), ("negative", -1.0)):
        scores = []
        for h in range(H):
            v = xn @ W[:, 2 * d + h * dh: 2 * d + (h + 1) * dh] + b[2 * d + h * dh: 2 * d + (h + 1) * dh]
            o = sign * (v @ WO[h])
            logits = m.ln(o, "ln_f") @ m.p("wte.weight").T
            top = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
            scores.append(float(np.mean([t in top[r] for r, t in enumerate(targets)])))
        out[key].append(scores)
json.dump(out, sys.stdout)

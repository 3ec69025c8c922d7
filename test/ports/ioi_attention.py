"""Mean attention between the IOI words, read off the float64 GPT-2 forward of _gpt2.py (hook_pattern),
for tflens's tests of ioiAttention: for each query word q and key word k, the mean over prompts of
pattern[prompt, head, pos_q, pos_k], per layer and head (the attention-of-the-name-movers cell of the
IOI authors' experiment notebook averages the same entries).
stdin: {model, tokens [B][T], mask, positions {word: [B]}, queries [..], keys [..]}
stdout: {q: {k: [L][H]}}
"""
import json
import sys

import numpy as np

from _gpt2 import GPT2

x = json.load(sys.stdin)
m = GPT2(x["model"])
cache = {}
m.forward(np.asarray(x["tokens"]), np.asarray(x["mask"]), cache=cache)
pos = x["positions"]
B = len(x["tokens"])
out = {}
for q in x["queries"]:
    out[q] = {}
    for k in x["keys"]:
        out[q][k] = [[float(np.mean([cache[f"blocks.{l}.attn.hook_pattern"][i, h, pos[q][i], pos[k][i]] for i in range(B)])) for h in range(m.H)] for l in range(m.L)]
json.dump(out, sys.stdout)

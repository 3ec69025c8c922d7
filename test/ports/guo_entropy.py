"""Port of Guo et al.'s entropy detector (GuoTianYu2000/Active-Dormant-Attention), written for tflens's
tests from reading LLM/src/entropy.py (the four functions, lines 4-52) and the condition of
ZeroOutAttentionSinkHeadWithEntropyDetectionHook in LLM/src/hook.py (row < threshold and column >
threshold, per batch element and head).

stdin:  {"attn": [layer][B][H][N][N] (one prompt length, no padding), "row_thr": float, "col_thr": float}
stdout: {"row": [layer][B][H], "col": [layer][B][H], "dormant": [layer][B][H] (0/1),
         "row_tokens": [layer][B][H][N], "col_tokens": [layer][B][H][N]}
"""
import json
import sys

import numpy as np


def xlogx_sum(p, axis):
    safe = np.where(p > 0, p, 1.0)
    return np.sum(np.where(p > 0, -p * np.log(safe), 0.0), axis=axis)


def row_tokenwise(a):
    s = a.sum(axis=-1, keepdims=True)
    probs = np.where(a > 0, a / np.where(s > 0, s, 1.0), 0.0)
    entropy = xlogx_sum(probs, -1)
    norm = np.log(np.arange(1, a.shape[-1] + 1, dtype=np.float64)).reshape([1] * (entropy.ndim - 1) + [-1])
    return np.where(norm > 0, entropy / np.where(norm > 0, norm, 1.0), 0.0)


def column_tokenwise(a):
    s = a.sum(axis=-2, keepdims=True)
    probs = np.where(a > 0, a / np.where(s > 0, s, 1.0), 0.0)
    entropy = xlogx_sum(probs, -2)
    n = a.shape[-2]
    norm = np.log(n - np.arange(0, n, dtype=np.float64)).reshape([1] * (entropy.ndim - 1) + [-1])
    return np.where(norm > 0, entropy / np.where(norm > 0, norm, 1.0), 0.0)


def main():
    inp = json.load(sys.stdin)
    out = {k: [] for k in ("row", "col", "dormant", "row_tokens", "col_tokens")}
    for layer in inp["attn"]:
        a = np.asarray(layer, dtype=np.float64)
        rt, ct = row_tokenwise(a), column_tokenwise(a)
        row, col = rt.mean(axis=-1), ct.max(axis=-1)
        out["row"].append(row.tolist())
        out["col"].append(col.tolist())
        out["dormant"].append(((row < inp["row_thr"]) & (col > inp["col_thr"])).astype(int).tolist())
        out["row_tokens"].append(rt.tolist())
        out["col_tokens"].append(ct.tolist())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

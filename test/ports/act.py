#!/usr/bin/env python3
"""ACT (Yu et al., ICML 2024) on single attention heads, for tflens's tests.

Written from reading GATECH-EIC/ACT models/llama_modelling_aug.py (atten_process_cal and
atten_process_eval, which apply the same rule to one head of batch element 0): column means of the
prefill matrix, the sinks above THRES without the lowest one, BETA kept on them, the freed mass given
to the other entries of each row in proportion to their attention, then entry [0, 0] set to 1.
numpy, float64; 0/0 gives NaN as in the original (returned as null).

stdin:  {"heads": [A, ...] (each a q x q prefill matrix), "threshold": 0.1, "beta": 0.4}
stdout: {"out": [A', ...], "means": [[m_j], ...], "sinks": [[j, ...], ...]}
"""
import json
import sys

import numpy as np


def act_head(a, threshold, beta):
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    # column sums over all rows, divided by how many rows can see column j (n - j)
    means = a.sum(axis=0) / np.arange(n, 0, -1)
    sinks = np.flatnonzero(means > threshold)[1:]
    freed = a[:, sinks].sum(axis=1, keepdims=True) * (1.0 - beta)
    scaled = a.copy()
    scaled[:, sinks] *= beta
    # proportions of the original row, with the hidden sinks zeroed in every row but the first
    share = a.copy()
    share[1:, sinks] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = share / share.sum(axis=1, keepdims=True)
    out = scaled + freed * ratios
    out[0, 0] = 1.0
    return out, means, sinks


def nulls(x):
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in x]


def main():
    req = json.load(sys.stdin)
    res = {"out": [], "means": [], "sinks": []}
    for a in req["heads"]:
        out, means, sinks = act_head(a, req.get("threshold", 0.1), req.get("beta", 0.4))
        res["out"].append(nulls(out))
        res["means"].append([float(v) for v in means])
        res["sinks"].append([int(j) for j in sinks])
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()

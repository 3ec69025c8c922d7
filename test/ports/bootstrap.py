"""Independent numpy port of tflens's seeded percentile bootstrap (src/analyses/stats.ts has no external
author: this is the textbook percentile interval, with numpy's default linear quantile and a Python copy
of the project PRNG, mulberry32, so that the same resamples are drawn). Also numpy's sample std.

stdin:  {"values": [float], "n": int, "level": float, "seed": int, "runs": [[float]] (optional)}
stdout: {"estimate", "lo", "hi", "std": sample std of values, "runs_mean": [..], "runs_std": [..]}
"""
import json
import sys

import numpy as np

M32 = 0xFFFFFFFF


def imul(a, b):
    return (a * b) & M32


def mulberry32(seed):
    state = [seed & M32]

    def nxt():
        state[0] = (state[0] + 0x6D2B79F5) & M32
        t = state[0]
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return nxt


def main():
    inp = json.load(sys.stdin)
    values = np.asarray(inp["values"], dtype=np.float64)
    u = mulberry32(int(inp["seed"]))
    m = values.size
    reps = np.empty(int(inp["n"]))
    for b in range(reps.size):
        idx = [int(np.floor(u() * m)) for _ in range(m)]
        reps[b] = values[idx].mean()
    a = (1 - inp["level"]) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    out = {"estimate": values.mean(), "lo": lo, "hi": hi, "std": values.std(ddof=1)}
    if "runs" in inp:
        runs = np.asarray(inp["runs"], dtype=np.float64)
        out["runs_mean"] = runs.mean(axis=0).tolist()
        out["runs_std"] = runs.std(axis=0, ddof=1).tolist()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

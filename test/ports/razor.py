"""Independent port of the published RazorAttention head scores, written for tflens's tests from reading
two ports of the method (there is no official code):
  golden-stick: mindspore-ai/golden-stick, mindspore_gs/experimental/long_context_compress/
    razor_attention/wrappers/vllm_mindspore/attention_wrappers.py: _get_score_mask (lines 101-111, the
    mask loop over the full pattern, BOS included), _calc_score (lines 113-119, mean over all entries),
    _max_every_group (lines 131-134); razor_attention.py _select_top_heads (lines 225-245).
  msmodelslim: Ascend/msmodelslim, msmodelslim/pytorch/ra_compression/ra_rope_tools.py:
    _get_prefix_matching_score / _get_copying_matching_score (lines 168-190: BOS row and column cut,
    the masked mass summed per row, then the mean over rows), select_top_heads (lines 106-125).
  a later msmodelslim variant, select_top_heads_all: max(1, round(n * ratio)) heads, exactly that many.

stdin: {"R": block length, "patterns": [layer][head][n][n] (one probe), "n_kv_heads",
        "selections": [{"grid": [layer][kv head] scores, "ratio": r}]}
stdout: {"golden_stick": {"echo": [layer][kv], "induction": [layer][kv]}, "msmodelslim": {...},
         "selections": [{"by_value": [[l, kv]], "exact_min1": [[l, kv]]}]}
"""
import json
import sys

import numpy as np


def golden_stick_masks(n, R):
    echo = np.zeros((n, n))
    induction = np.zeros((n, n))
    for i in range(1, n):
        if i // R == 0:
            continue
        for j in range(i % R, i, R):
            echo[i, j] = 1
            induction[i, j + 1] = 1
    return echo, induction


def golden_stick_scores(A, R):
    echo, induction = golden_stick_masks(A.shape[0], R)
    return float(np.mean(A * echo)), float(np.mean(A * induction))


def msmodelslim_scores(A, R):
    cut = A[1:, 1:]
    echo_rows, induction_rows = [], []
    for i, row in enumerate(cut):
        if i // R == 0:
            continue
        js = list(range(i % R, i, R))
        echo_rows.append(sum(row[j] for j in js))
        induction_rows.append(sum(row[j + 1] for j in js))
    return float(np.mean(echo_rows)), float(np.mean(induction_rows))


def max_every_group(values, n):
    return [max(values[i:i + n]) for i in range(0, len(values), n)]


def select_by_value(data, ratio):
    """_select_top_heads / select_top_heads: round(n * ratio) values, every head holding one of them."""
    values = sorted([v for layer in data for v in layer], reverse=True)
    top = values[:round(len(values) * ratio)]
    return [[l, h] for l, layer in enumerate(data) for h, v in enumerate(layer) if v in top]


def select_exact_min1(data, ratio):
    """select_top_heads_all: max(1, round(n * ratio)) entries of a stable descending sort."""
    entries = [(l, h, v) for l, layer in enumerate(data) for h, v in enumerate(layer)]
    entries.sort(key=lambda e: e[2], reverse=True)
    k = max(1, round(len(entries) * ratio))
    return sorted([[l, h] for l, h, _ in entries[:k]])


def scores_of(patterns, R, n_kv, fn):
    echo, induction = [], []
    for layer in patterns:
        per_head = [fn(np.asarray(A, dtype=np.float64), R) for A in layer]
        group = len(per_head) // n_kv
        echo.append(max_every_group([e for e, _ in per_head], group))
        induction.append(max_every_group([i for _, i in per_head], group))
    return echo, induction


def main():
    inp = json.load(sys.stdin)
    R, n_kv = inp["R"], inp["n_kv_heads"]
    out = {}
    for name, fn in (("golden_stick", golden_stick_scores), ("msmodelslim", msmodelslim_scores)):
        echo, induction = scores_of(inp["patterns"], R, n_kv, fn)
        out[name] = {"echo": echo, "induction": induction}
    out["selections"] = [{"by_value": select_by_value(s["grid"], s["ratio"]), "exact_min1": select_exact_min1(s["grid"], s["ratio"])}
                         for s in inp["selections"]]
    json.dump(out, sys.stdout)


main()

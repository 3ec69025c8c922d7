#!/usr/bin/env python3
"""VAR (Kang et al., ICLR 2025) on one prompt, for tflens's tests.

Written from reading MICV-yonsei/VisAttnSink: src/logic/logic.py (DimProspector.run_logic,
HeadFork.run_logic, VARProcessor.attn_redist) and src/model/llava.py (where they run). What the code
does, step by step:
  - sink tokens of layer l come from the hidden state entering layer l, for l in [2:] only, during the
    prefill only: phi = max over the sink dimensions of |x_d| / sqrt(mean(x^2) + 1e-6) > tau;
  - HeadFork: when no sink of layer l lies in the image span, nothing is selected (the layer is left
    as it is); else a (head, query) is selected when its attention on the image span is >= summ and the
    share on the image's sinks (denominator sum(image_attn + 1e-6)) is <= rho;
  - attn_redist: in the prefill only queries after the image are kept; every sink column (image or
    text) keeps p of its weight and the freed (1 - p) share moves to the image tokens that are not
    sinks, in proportion to their attention; no layer is skipped (VARProcessor.except_last_layer is
    False, which shadows the flag activate() sets).
numpy, float64.

stdin:  {"hidden": [L][T][d] (input of each layer), "attn": [L][H][T][T] (prefill pattern of each layer,
         before redistribution), "decode": optional [L][H][1][K] (one decoding step's pattern),
         "dims": [...], "tau", "rho", "summ", "p", "im", "pa"}
stdout: {"attn": [L][H][T][T] after VAR, "decode": [L][H][1][K] after VAR (when given),
         "sinks": [L][indices], "selected": [L] number of selected (head, query) pairs in the prefill}
"""
import json
import sys

import numpy as np


def sink_indices(h, dims, tau):
    h = np.asarray(h, dtype=np.float64)
    normed = np.abs(h / np.sqrt((h ** 2).mean(axis=-1, keepdims=True) + 1e-6))
    return np.flatnonzero(normed[:, dims].max(axis=-1) > tau)


def head_fork(attn, sinks, im, pa, rho, summ):
    """(head, query) pairs selected at one layer; None when no sink lies in the image."""
    vis = [i for i in sinks if im <= i < im + pa]
    if not vis:
        return None
    image = attn[:, :, im:im + pa]
    portion = image[:, :, np.array(vis) - im].sum(axis=-1) / (image + 1e-6).sum(axis=-1)
    total = image.sum(axis=-1)
    return np.argwhere((portion <= rho) & (total >= summ))


def redistribute(attn, coords, sinks, im, pa, p, prefill):
    out = attn.copy()
    if coords is None or len(coords) == 0:
        return out
    vis = np.array([i for i in sinks if im <= i < im + pa], dtype=int)
    text = np.array([i for i in sinks if not (im <= i < im + pa)], dtype=int)
    for h in range(attn.shape[0]):
        queries = coords[coords[:, 0] == h][:, 1]
        if prefill:
            queries = queries[queries >= im + pa]
        for qi in queries:
            row = attn[h, qi].copy()
            new = row.copy()
            new[text] *= p
            new[vis] *= p
            budget = (row[vis].sum() + row[text].sum()) * (1 - p)
            share = row.copy()
            share[vis] = 0.0
            image = share[im:im + pa]
            new[im:im + pa] += budget * image / image.sum()
            out[h, qi] = new
    return out


def main():
    req = json.load(sys.stdin)
    dims, tau, rho, summ, p = req["dims"], req["tau"], req["rho"], req["summ"], req["p"]
    im, pa = req["im"], req["pa"]
    n_layers = len(req["attn"])
    res = {"attn": [], "sinks": [], "selected": []}
    if "decode" in req:
        res["decode"] = []
    for layer in range(n_layers):
        sinks = sink_indices(req["hidden"][layer], dims, tau) if layer >= 2 else np.array([], dtype=int)
        attn = np.asarray(req["attn"][layer], dtype=np.float64)
        coords = head_fork(attn, sinks, im, pa, rho, summ)
        res["sinks"].append([int(i) for i in sinks])
        res["selected"].append(0 if coords is None else int(sum(1 for h, q in coords if q >= im + pa)))
        res["attn"].append(redistribute(attn, coords, sinks, im, pa, p, True).tolist())
        if "decode" in req:
            dec = np.asarray(req["decode"][layer], dtype=np.float64)
            res["decode"].append(redistribute(dec, head_fork(dec, sinks, im, pa, rho, summ), sinks, im, pa, p, False).tolist())
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()

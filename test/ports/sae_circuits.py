"""Independent numpy port of the discrete-SAE circuit method of O'Neill & Bui
(github.com/charlieoneill11/sae-circuits), written for tflens's tests from reading that code:

- op "scores": node scores (src/node.py lines 24-86, softmax of src/common_utils.py lines 91-94), edge
  scores (src/edge.py lines 19-144, k = len(head_labels)**2 // 2 from src/main.py line 182) and their
  evaluation (src/common_utils.py lines 97-107: scikit-learn's roc_curve with its default
  drop_intermediate, the trapezoid auc, F1 = 2*TPR*TNR/(TPR+TNR); best F1 as src/main.py lines 164-165).
  roc_curve and auc are re-implemented here from scikit-learn's documented algorithm.
- op "sae": the SAE of src/sae.py (tied pre-encoder/post-decoder bias, unit-norm rows of both torch
  weights, gradient component along each row removed by a backward hook) trained by src/train.py
  (full batch, loss = MSE + lambda * mean L1, torch Adam) in float64, with gradients written out by hand.
- op "argsort": np.argsort (numpy's default kind unless "kind" is given), for the tie-order test.

Reads one JSON object on stdin, writes one JSON object on stdout.
"""
import json
import re
import sys

import numpy as np


# ------------------------------------------------------------------ head labels and grids

def head_of(label):
    """'L3H1' -> (3, 1)."""
    return int(re.findall(r"L(\d+)H", label)[0]), int(re.findall(r"H(\d+)", label)[0])


def empty_grid(labels):
    layers = {head_of(s)[0] for s in labels}
    heads = {head_of(s)[1] for s in labels}
    return np.zeros((len(layers), len(heads)))


def softmax0(x):
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


# ------------------------------------------------------------------ node score

def node_prediction(codes, labels, normalise):
    half = codes.shape[0] // 2
    pos, neg = codes[:half], codes[half:]
    grid = empty_grid(labels)
    for col, label in enumerate(labels):
        layer, head = head_of(label)
        p, n = set(pos[:, col].tolist()), set(neg[:, col].tolist())
        only_pos = len(p - n)
        grid[layer, head] = only_pos / len(p | n) if normalise else only_pos
    return softmax0(grid.flatten())


# ------------------------------------------------------------------ edge score

def cooccurrence(codes, n_heads, n_feat):
    """counts[h1, h2, c1, c2]: examples where head h1 has code c1 and head h2 code c2, h1 != h2."""
    m = np.zeros((n_heads, n_heads, n_feat, n_feat))
    for h1 in range(n_heads):
        for h2 in range(n_heads):
            if h1 != h2:
                np.add.at(m[h1, h2], (codes[:, h1], codes[:, h2]), 1)
    return m


def unique_pairs(pos_m, neg_m, normalise):
    n_heads = pos_m.shape[0]
    out = np.zeros((n_heads, n_heads))
    for h1 in range(n_heads):
        for h2 in range(n_heads):
            if h1 == h2:
                continue
            seen_pos = pos_m[h1, h2] > 0
            seen_neg = neg_m[h1, h2] > 0
            count = np.sum(seen_pos & ~seen_neg)
            if normalise:
                total = np.sum(seen_pos) + np.sum(seen_neg)
                out[h1, h2] = count / total if total > 0 else 0
            else:
                out[h1, h2] = count
    return out


def edge_prediction(codes, labels, n_feat, normalise, k):
    half = codes.shape[0] // 2
    n_heads = codes.shape[1]
    counts = unique_pairs(cooccurrence(codes[:half], n_heads, n_feat), cooccurrence(codes[half:], n_heads, n_feat), normalise)
    ranked = np.argsort(counts.flatten())[::-1]  # numpy's default sort, as the authors
    rows, cols = np.unravel_index(ranked, counts.shape)
    entries = []
    for a, b in zip(rows, cols):
        entries.append(head_of(labels[a]))
        entries.append(head_of(labels[b]))
    grid = empty_grid(labels)
    for layer, head in entries[:k]:
        grid[layer, head] += 1
    flat = grid.flatten()
    return np.exp(flat) / np.sum(np.exp(flat), axis=0), counts, grid


# ------------------------------------------------------------------ ROC (scikit-learn's algorithm)

def roc(y_true, y_score):
    order = np.argsort(y_score, kind="mergesort")[::-1]
    s = y_score[order]
    y = y_true[order]
    last_of_value = np.r_[np.where(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[last_of_value]
    fps = 1 + last_of_value - tps
    thr = s[last_of_value]
    if len(fps) > 2:  # drop the middle points of straight stretches
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    thr = np.r_[np.inf, thr]
    fpr = fps / fps[-1]
    tpr = tps / tps[-1]
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * (tpr * (1 - fpr)) / (tpr + (1 - fpr))
    best = int(np.argmax(f1))  # np.max(f1) is NaN when a point has TPR + TNR = 0: reported as null
    finite = lambda v: float(v) if np.isfinite(v) else None
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [finite(t) for t in thr],
            "auc": area, "bestF1": finite(np.max(f1)), "bestThreshold": finite(thr[best])}


def op_scores(q):
    codes = np.array(q["positive"] + q["negative"], dtype=np.int64)
    labels = q["labels"]
    truth = empty_grid(labels)
    for layer, head in q["groundTruth"]:
        truth[layer, head] = 1
    y_true = truth.flatten()
    k = q.get("k")
    if k is None:
        k = len(labels) ** 2 // 2
    node = node_prediction(codes, labels, q["normalise"])
    edge, counts, appearances = edge_prediction(codes, labels, int(q["nFeatures"]), q["normalise"], k)
    return {"node": node.tolist(), "edge": edge.tolist(), "pairCounts": counts.tolist(), "appearances": appearances.tolist(),
            "k": k, "nodeRoc": roc(y_true, node), "edgeRoc": roc(y_true, edge)}


# ------------------------------------------------------------------ the SAE and its training

def unit_rows(w):
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def without_radial(g, w):
    """The backward hook: remove from each row of g its component along the same row of w."""
    return g - np.sum(g * w, axis=1, keepdims=True) * (w / np.linalg.norm(w, axis=1, keepdims=True))


def sae_forward(x, p, decoder_norm):
    """Returns (pre, f, recon) after re-normalising the weights in place (the layers do it on forward)."""
    p["enc_w"] = unit_rows(p["enc_w"])
    p["dec_w"] = unit_rows(p["dec_w"]) if decoder_norm == "input" else unit_rows(p["dec_w"].T).T
    centred = x - p["bias"]
    pre = centred @ p["enc_w"].T + p["enc_b"]
    f = np.maximum(pre, 0)
    return pre, f, f @ p["dec_w"].T + p["bias"]


def sae_loss(x, f, recon, lam):
    mse = np.mean((recon - x) ** 2)
    l1 = np.mean(np.sum(np.abs(f), axis=1))
    return mse + lam * l1, mse, l1


def sae_grads(x, p, pre, f, recon, lam, decoder_norm):
    n, d = x.shape
    d_recon = 2 * (recon - x) / (n * d)
    g = {"dec_w": d_recon.T @ f}
    d_f = d_recon @ p["dec_w"] + lam * np.sign(f) / n
    d_pre = d_f * (pre > 0)
    g["enc_w"] = d_pre.T @ (x - p["bias"])
    g["enc_b"] = d_pre.sum(axis=0)
    g["bias"] = d_recon.sum(axis=0) - (d_pre @ p["enc_w"]).sum(axis=0)
    g["enc_w"] = without_radial(g["enc_w"], p["enc_w"])
    g["dec_w"] = without_radial(g["dec_w"], p["dec_w"]) if decoder_norm == "input" else without_radial(g["dec_w"].T, p["dec_w"].T).T
    return g


def op_sae(q):
    x = np.array(q["x"], dtype=np.float64)
    p = {name: np.array(q["weights"][name], dtype=np.float64) for name in ("enc_w", "enc_b", "dec_w", "bias")}
    lam, lr, eps, norm = q["lambda"], q["lr"], 1e-8, q["decoderNorm"]
    beta1, beta2 = 0.9, 0.999
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    losses = []
    for t in range(1, q["steps"] + 1):
        pre, f, recon = sae_forward(x, p, norm)
        losses.append([float(a) for a in sae_loss(x, f, recon, lam)])
        g = sae_grads(x, p, pre, f, recon, lam, norm)
        for k in p:
            m[k] = beta1 * m[k] + (1 - beta1) * g[k]
            v[k] = beta2 * v[k] + (1 - beta2) * g[k] ** 2
            step = lr / (1 - beta1 ** t)
            p[k] = p[k] - step * m[k] / (np.sqrt(v[k]) / np.sqrt(1 - beta2 ** t) + eps)
    pre, f, recon = sae_forward(x, p, norm)
    return {"losses": losses, "weights": {k: w.tolist() for k, w in p.items()}, "codes": np.argmax(f, axis=1).tolist(),
            "features": f.tolist(), "final": [float(a) for a in sae_loss(x, f, recon, lam)]}


def op_argsort(q):
    kind = q.get("kind")  # None: numpy's default ('quicksort', an introsort), as the authors call it
    return {"numpy": np.__version__, "orders": [np.argsort(np.array(a, dtype=np.float64), kind=kind).tolist() for a in q["arrays"]]}


if __name__ == "__main__":
    query = json.load(sys.stdin)
    ops = {"scores": op_scores, "sae": op_sae, "argsort": op_argsort}
    json.dump(ops[query["op"]](query), sys.stdout)

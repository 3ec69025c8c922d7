#!/usr/bin/env python3
"""Weight-space scores as TransformerLens computes them, for tflens's tests.

Written from reading TransformerLensOrg/TransformerLens:
  - transformer_lens/FactoredMatrix.py: the SVD of A B through the SVDs of A, B and the small middle
    matrix, collapse_l = S[:, None] * V^T, collapse_r = U * S, norm = sqrt(sum S^2), eigenvalues =
    eig(B A);
  - transformer_lens/utilities/matrix.py composition_scores: ||collapse_l(L) @ collapse_r(R)|| /
    ||collapse_r(R)|| / ||collapse_l(L)||;
  - HookedTransformer.all_composition_scores: L = model.OV, R = model.QK (Q), model.QK.T (K),
    model.OV (V), zero unless the right head's layer is later; model.OV = FactoredMatrix(W_V, W_O),
    model.QK = FactoredMatrix(W_Q, W_K^T), grouped KV heads repeated per query head;
  - demos/Main_Demo.ipynb, "Eigenvalue Copying Scores": eigenvalues of W_E @ model.OV @ W_U,
    copying score = eig.sum().real / |eig|.sum().
numpy, float64.

stdin:  {"W_E": [V][d], "W_U": [d][V], "W_Q": [L][H][d][dh], "W_K": [L][K][d][dh], "W_V": [L][K][d][dh],
         "W_O": [L][H][dh][d]}
stdout: {"Q"|"K"|"V": [L][H][L][H] composition scores, "copying": [L][H], "ov_token": [L][H][V][V],
         "qk_token": [L][H][V][V], "eig_abs": [L][H][dh] |eigenvalues| of the token OV circuit, descending};
        NaN (0/0 for a zero circuit) as null
"""
import json
import sys

import numpy as np


class Factored:
    def __init__(self, a, b):
        self.a, self.b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    @property
    def T(self):
        return Factored(self.b.T, self.a.T)

    def svd(self):
        ua, sa, vha = np.linalg.svd(self.a, full_matrices=False)
        ub, sb, vhb = np.linalg.svd(self.b, full_matrices=False)
        middle = (sa[:, None] * vha) @ ub * sb[None, :]
        um, sm, vhm = np.linalg.svd(middle, full_matrices=False)
        return ua @ um, sm, vhb.T @ vhm.T

    def collapse_l(self):
        _, s, v = self.svd()
        return s[:, None] * v.T

    def collapse_r(self):
        u, s, _ = self.svd()
        return u * s[None, :]

    def eigenvalues(self):
        return np.linalg.eigvals(self.b @ self.a)


def composition(left, right):
    cl, cr = left.collapse_l(), right.collapse_r()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.linalg.norm(cl @ cr) / np.linalg.norm(cr) / np.linalg.norm(cl)


def clean(x):
    """NaN (TransformerLens's 0/0 for a head that writes nothing) as null."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return None if isinstance(x, float) and not np.isfinite(x) else x


def main():
    req = json.load(sys.stdin)
    we, wu = np.asarray(req["W_E"], dtype=np.float64), np.asarray(req["W_U"], dtype=np.float64)
    wq = [np.asarray(x, dtype=np.float64) for x in req["W_Q"]]
    n_layers, n_heads = len(wq), wq[0].shape[0]
    rep = lambda w: np.repeat(np.asarray(w, dtype=np.float64), n_heads // len(w), axis=0)
    wk, wv = [rep(x) for x in req["W_K"]], [rep(x) for x in req["W_V"]]
    wo = [np.asarray(x, dtype=np.float64) for x in req["W_O"]]
    ov = [[Factored(wv[l][h], wo[l][h]) for h in range(n_heads)] for l in range(n_layers)]
    qk = [[Factored(wq[l][h], wk[l][h].T) for h in range(n_heads)] for l in range(n_layers)]
    right = {"Q": qk, "K": [[m.T for m in row] for row in qk], "V": ov}
    res = {}
    for mode, rs in right.items():
        res[mode] = [[[[float(composition(ov[l1][h1], rs[l2][h2])) if l1 < l2 else 0.0 for h2 in range(n_heads)]
                       for l2 in range(n_layers)] for h1 in range(n_heads)] for l1 in range(n_layers)]
    res["copying"], res["eig_abs"], res["ov_token"], res["qk_token"] = [], [], [], []
    for l in range(n_layers):
        cop, eabs, ovt, qkt = [], [], [], []
        for h in range(n_heads):
            full = Factored(we @ ov[l][h].a, ov[l][h].b @ wu)  # W_E @ OV @ W_U, kept factored
            eig = full.eigenvalues()
            with np.errstate(invalid="ignore", divide="ignore"):
                cop.append(float(eig.sum().real / np.abs(eig).sum()))
            eabs.append(sorted((float(v) for v in np.abs(eig)), reverse=True))
            ovt.append((full.a @ full.b).tolist())
            qkt.append((we @ qk[l][h].a @ qk[l][h].b @ we.T).tolist())
        res["copying"].append(cop)
        res["eig_abs"].append(eabs)
        res["ov_token"].append(ovt)
        res["qk_token"].append(qkt)
    json.dump(clean(res), sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()

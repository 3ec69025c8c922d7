#!/usr/bin/env python3
"""PCA as scikit-learn's PCA (svd_solver='full') computes it, for tflens's tests.

Written from reading scikit-learn sklearn/decomposition/_pca.py (_fit_full): center the data, take the
SVD X - mean = U S V^T; components are the rows of V^T, explained variance S^2 / (n_samples - 1), the
ratio divides by the total variance (sum of per-feature sample variances). Signs follow tflens's
convention (each component's largest-magnitude entry positive), since only the sign is a convention.
numpy, float64.

stdin:  {"X": [n][d], "k": components}
stdout: {"mean": [d], "components": [k][d], "explained_variance": [k], "explained_variance_ratio": [k],
         "projections": [n][k]}
"""
import json
import sys

import numpy as np


def main():
    req = json.load(sys.stdin)
    x = np.asarray(req["X"], dtype=np.float64)
    k = req["k"]
    mean = x.mean(axis=0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    var = s ** 2 / (x.shape[0] - 1)
    total = xc.var(axis=0, ddof=1).sum()
    json.dump({
        "mean": mean.tolist(),
        "components": comps.tolist(),
        "explained_variance": var[:k].tolist(),
        "explained_variance_ratio": (var[:k] / total).tolist(),
        "projections": (xc @ comps.T).tolist(),
    }, sys.stdout)


if __name__ == "__main__":
    main()

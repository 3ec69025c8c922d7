"""Port of VAR's sink-token detection (Kang et al., MICV-yonsei/VisAttnSink, read through the public
fork benmagnifico/VisAttnSink, src/logic/logic.py): DimProspector.rmsnorm (float32, eps 1e-6) and
DimProspector.run_logic (|rmsnorm(h)| at the sink dimensions, max over them, tokens above tau), applied
to the hidden state entering each selected layer (layers[2:] by default). Also the ranking tflens uses
to find sink dimensions (max ratio per dimension over tokens and layers), for the same arrays.

stdin:  {"hidden": [layer][B][N][d] (inputs of the selected layers), "dims": [int], "tau": float}
stdout: {"phi": [layer][B][N], "indices": [layer][[b, t] pairs above tau], "per_dim": [d]}
"""
import json
import sys

import numpy as np


def rmsnorm(hs, eps=1e-6):
    hs = hs.astype(np.float32)
    variance = (hs ** 2).mean(axis=-1, keepdims=True)
    return hs / np.sqrt(variance + np.float32(eps))


def run_logic(hs, dims, tau):
    ratios = np.abs(rmsnorm(hs))
    phi = np.stack([ratios[:, :, d] for d in dims], axis=-1).max(axis=-1)
    return phi, np.argwhere(phi > tau).tolist()


def main():
    inp = json.load(sys.stdin)
    hidden = [np.asarray(h, dtype=np.float32) for h in inp["hidden"]]
    out = {"phi": [], "indices": []}
    for hs in hidden:
        phi, idx = run_logic(hs, inp["dims"], float(inp["tau"]))
        out["phi"].append(phi.astype(np.float64).tolist())
        out["indices"].append(idx)
    out["per_dim"] = np.max([np.abs(rmsnorm(hs)).max(axis=(0, 1)) for hs in hidden], axis=0).astype(np.float64).tolist()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

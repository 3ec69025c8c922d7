"""Port of ACT's hidden-sink detection (GATECH-EIC/ACT), written for tflens's tests from reading
models/llama_modelling_aug.py, atten_process_cal lines 48-50: the column sum of one head's attention
map divided by arange(N, 0, -1), the indices above THRES, minus the first of them.

stdin:  {"attentions": [sample][layer][head][N][N], "thres": float}
stdout: {"sinks": [sample][layer][head][list of key indices], "means": [sample][layer][head][N]}
"""
import json
import sys

import numpy as np


def hidden_sinks(head, thres):
    n = head.shape[0]
    means = head.sum(axis=0) / np.arange(n, 0, -1, dtype=head.dtype)
    indices = np.nonzero(np.where(means > thres, 1, 0))[0]
    return indices[1:].tolist(), means


def main():
    inp = json.load(sys.stdin)
    attn = np.asarray(inp["attentions"], dtype=np.float32)
    thres = float(inp["thres"])
    sinks, means = [], []
    for sample in attn:
        s_rows, m_rows = [], []
        for layer in sample:
            res = [hidden_sinks(head, thres) for head in layer]
            s_rows.append([r[0] for r in res])
            m_rows.append([r[1].astype(np.float64).tolist() for r in res])
        sinks.append(s_rows)
        means.append(m_rows)
    json.dump({"sinks": sinks, "means": means}, sys.stdout)


if __name__ == "__main__":
    main()

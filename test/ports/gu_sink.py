"""Port of Gu et al.'s sink metric and activation norms (sail-sg/Attention-Sink), written for tflens's
tests from reading eval_sink_open_source.py (compute_attention_sink, lines 41-49) and
eval_activations_open_source.py (compute_norm lines 71-82, compute_kv_norm lines 85-96).

stdin:  {"attentions": [sample][layer][head][N][N], "eps": float,
         "hidden_states": [sample][state][N][d] (optional),
         "keys": [sample][layer][head][N][dh], "values": same (optional)}
stdout: {"metric": [N] percent per key position, "importance": [sample][layer][head][N],
         "first10": the curve eval_sink_pretrain.py prints, "norms": [state][N],
         "key_norms": [layer][N], "value_norms": [layer][N]}
"""
import json
import sys

import numpy as np


def importance_scores(attn):
    # attn: (samples, layers, heads, N, N); divide column j by N - j, sum over queries
    n = attn.shape[-1]
    ratios = np.arange(n, 0, -1, dtype=attn.dtype)[None, None, None, None, :]
    return (attn / ratios).sum(axis=-2)


def sink_metric(attn, eps):
    return (importance_scores(attn) > eps).astype(np.float64).mean(axis=(0, 1, 2)) * 100


def pretrain_curve(attn, eps):
    # eval_sink_pretrain.py lines 145-151: mean over (layers, heads) per sample, first 10 positions, mean over samples
    per_sample = (importance_scores(attn) > eps).astype(np.float64).mean(axis=(1, 2))
    return per_sample[:, :10].mean(axis=0) * 100


def main():
    inp = json.load(sys.stdin)
    attn = np.asarray(inp["attentions"], dtype=np.float32)
    eps = float(inp["eps"])
    out = {
        "metric": sink_metric(attn, eps).tolist(),
        "importance": importance_scores(attn).astype(np.float64).tolist(),
        "first10": pretrain_curve(attn, eps).tolist(),
    }
    if "hidden_states" in inp:
        hs = np.asarray(inp["hidden_states"], dtype=np.float32)  # (samples, states, N, d)
        out["norms"] = np.linalg.norm(hs.astype(np.float64), axis=-1).mean(axis=0).tolist()
    for key in ("keys", "values"):
        if key in inp:
            kv = np.asarray(inp[key], dtype=np.float32)  # (samples, layers, heads, N, dh)
            out[key[:-1] + "_norms"] = np.linalg.norm(kv.astype(np.float64), axis=-1).mean(axis=(0, 2)).tolist()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

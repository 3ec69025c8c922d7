"""Port of Guo et al.'s per-head interventions and loss (GuoTianYu2000/Active-Dormant-Attention),
written for tflens's tests from reading LLM/src/hook.py (ZeroOutAttentionHeadHook: the head's attention
weights set to 0; MoveAttentionToBOSHook: set to 0, then column 0 set to 1) and LLM/src/loss_ppl.py
(ce_loss: shift by one, mean cross-entropy over every position).

stdin:  {"op": "intervene", "attn": [B][H][N][N], "head": int, "kind": "zero_out_attn" | "move_attn_to_bos"}
     or {"op": "loss", "logits": [B][N][V], "labels": [B][N]}
stdout: {"attn": [B][H][N][N]} or {"loss": float}
"""
import json
import sys

import numpy as np


def intervene(attn, head, kind):
    attn = attn.copy()
    attn[..., head, :, :] = 0
    if kind == "move_attn_to_bos":
        attn[..., head, :, 0] = 1
    elif kind != "zero_out_attn":
        raise ValueError(kind)
    return attn


def ce_loss(logits, labels):
    shift_logits = logits[..., :-1, :].reshape(-1, logits.shape[-1]).astype(np.float64)
    shift_labels = labels[..., 1:].reshape(-1)
    m = shift_logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(shift_logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    return float(np.mean(lse - shift_logits[np.arange(shift_labels.size), shift_labels]))


def main():
    inp = json.load(sys.stdin)
    if inp["op"] == "intervene":
        out = {"attn": intervene(np.asarray(inp["attn"], dtype=np.float32), int(inp["head"]), inp["kind"]).tolist()}
    else:
        out = {"loss": ce_loss(np.asarray(inp["logits"], dtype=np.float32), np.asarray(inp["labels"], dtype=np.int64))}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

"""Port of Guo et al.'s Bigram-Backcopy dynamics measures (GuoTianYu2000/Active-Dormant-Attention),
written for tflens's tests from reading BBM/probe_utils.py:
  - the inputs are x = seqs[:, :-1] (lines 158-162);
  - get_dynamic_summary (lines 250-320): "bos_attn" = attention weights of a head to key 0, averaged
    over every query position that is not a trigger (query 0 included); "value_norm" = norm of the
    raw value state of head 0 at position 0 of sequence 0; "output_norm" = norm of a residual state at
    position 0 of sequence 0;
  - get_oracle_predicts (lines 226-238): the true next-token distribution at input position j is one-hot
    on x[j-1] when x[j] is a trigger, else the transition row of x[j] (BOS has its own row, the
    distribution of the first character);
  - get_risk (lines 240-248): softmax of the logits, -log, zeroed where the oracle gives probability
    0, summed against the oracle distribution per position, then averaged over trigger positions
    (backcopy risk) and over the other positions (bigram risk);
and BBM/final-plots.ipynb for the "other positions" means (x[:, 1:].norm(-1).mean()) and the value
through W_O (wo(value_states[...]).norm()). The variants tflens keeps (queries after BOS only) are
computed here too, from their definitions.

stdin:  {"attn": [layer][B][H][N][N], "values": [layer][B][H][N][dh] (value_states layout: heads first),
         "wo": [layer][H][dh][d_model], "states": [state][B][N][d_model], "x": [B][N] input token ids,
         "idxs": trigger token ids, "cond": [V][V] next-token distribution of each token, "logits": [B][N][V]}
stdout: {"bos_attn", "bos_attn_after_bos", "value_norm", "value_other", "value_out_norm", "value_out_other"
         (each [layer][head]), "state_norm", "state_other" ([state]), "risk_trigger", "risk_non_trigger",
         "oracle_trigger", "oracle_non_trigger" (numbers)}
"""
import json
import sys

import numpy as np


def head_measures(attn, values, wo, trig):
    """Sink, raw value norm and value-through-W_O norm of every head of one layer."""
    heads = range(attn.shape[1])
    after = trig.copy()
    after[:, 0] = True  # excluding query 0 as well as the triggers
    out_bos = values[0, :, 0, :]  # [H, dh], sequence 0, position 0
    return {
        "bos_attn": [attn[:, h, :, 0][~trig].mean() for h in heads],
        "bos_attn_after_bos": [attn[:, h, :, 0][~after].mean() for h in heads],
        "value_norm": [np.linalg.norm(out_bos[h]) for h in heads],
        "value_other": [np.linalg.norm(values[:, h, 1:, :], axis=-1).mean() for h in heads],
        "value_out_norm": [np.linalg.norm(out_bos[h] @ wo[h]) for h in heads],
        "value_out_other": [np.linalg.norm(values[:, h, 1:, :] @ wo[h], axis=-1).mean() for h in heads],
    }


def oracle_predicts(x, cond, idxs):
    """The true next-token distribution at every input position."""
    out = np.zeros(x.shape + (cond.shape[1],))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if x[i, j] in idxs:
                out[i, j, x[i, j - 1]] = 1
            else:
                out[i, j] = cond[x[i, j]]
    return out


def risks(logits, oracle, trig):
    """Backcopy and bigram risks of the model and of the oracle itself."""
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        loss = -np.log(p)
        oracle_loss = -np.log(oracle)
    loss[oracle == 0] = 0
    oracle_loss[oracle == 0] = 0
    risk = (oracle * loss).sum(-1)
    own = (oracle * oracle_loss).sum(-1)
    return {
        "risk_trigger": risk[trig].mean(),
        "risk_non_trigger": risk[~trig].mean(),
        "oracle_trigger": own[trig].mean(),
        "oracle_non_trigger": own[~trig].mean(),
    }


def main():
    inp = json.load(sys.stdin)
    x = np.asarray(inp["x"], dtype=np.int64)
    trig = np.isin(x, inp["idxs"])
    out = {}
    for attn, values, wo in zip(inp["attn"], inp["values"], inp["wo"]):
        m = head_measures(np.asarray(attn, np.float64), np.asarray(values, np.float64), np.asarray(wo, np.float64), trig)
        for k, v in m.items():
            out.setdefault(k, []).append(v)
    states = [np.asarray(s, np.float64) for s in inp["states"]]
    out["state_norm"] = [np.linalg.norm(s[0, 0, :]) for s in states]
    out["state_other"] = [np.linalg.norm(s[:, 1:, :], axis=-1).mean() for s in states]
    oracle = oracle_predicts(x, np.asarray(inp["cond"], np.float64), set(inp["idxs"]))
    out.update(risks(np.asarray(inp["logits"], np.float64), oracle, trig))
    json.dump({k: np.asarray(v).tolist() for k, v in out.items()}, sys.stdout)


if __name__ == "__main__":
    main()

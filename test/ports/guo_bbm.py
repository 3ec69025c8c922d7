"""Port of Guo et al.'s Bigram-Backcopy measures (GuoTianYu2000/Active-Dormant-Attention), written for
tflens's tests from reading BBM/probe_utils.py, get_dynamic_summary lines 287-292:
  bos_attn   = attn_weights[:, h, :, 0][~triggers_pos].mean()       (query 0 included)
  value_norm = value_states[0, h, 0, :].norm()                       (raw value at BOS, no W_O)
  output_norm = output[0, 0, :].norm()                               (residual state at BOS)
and BBM/final-plots.ipynb (cell 44): the mean norm over the other positions, output[:, 1:, :].norm(-1).mean(),
and the value through W_O, wo(value_states[0, 0, 0, :]).norm().

stdin:  {"attn": [layer][B][H][N][N], "values": [layer][B][H][N][dh] (value_states layout),
         "wo": [layer][H][dh][d_model], "states": [state][B][N][d_model], "triggers": [B][N] (0/1)}
stdout: {"bos_attn": [layer][head], "value_norm": [layer][head], "value_other": [layer][head],
         "value_out_norm": [layer][head], "state_norm": [state], "state_other": [state]}
"""
import json
import sys

import numpy as np


def main():
    inp = json.load(sys.stdin)
    trig = np.asarray(inp["triggers"], dtype=bool)
    out = {k: [] for k in ("bos_attn", "value_norm", "value_other", "value_out_norm")}
    for attn, values, wo in zip(inp["attn"], inp["values"], inp["wo"]):
        attn = np.asarray(attn, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        wo = np.asarray(wo, dtype=np.float64)
        heads = range(attn.shape[1])
        out["bos_attn"].append([attn[:, h, :, 0][~trig].mean() for h in heads])
        out["value_norm"].append([np.linalg.norm(values[0, h, 0, :]) for h in heads])
        out["value_other"].append([np.linalg.norm(values[:, h, 1:, :], axis=-1).mean() for h in heads])
        out["value_out_norm"].append([np.linalg.norm(values[0, h, 0, :] @ wo[h]) for h in heads])
    states = [np.asarray(s, dtype=np.float64) for s in inp["states"]]
    out["state_norm"] = [np.linalg.norm(s[0, 0, :]) for s in states]
    out["state_other"] = [np.linalg.norm(s[:, 1:, :], axis=-1).mean() for s in states]
    json.dump({k: np.asarray(v).tolist() for k, v in out.items()}, sys.stdout)


if __name__ == "__main__":
    main()

"""Port of the IOI metrics, for tflens's tests (written from reading the authors' code, not copied):
- logit difference: redwoodresearch/Easy-Transformer easy_transformer/ioi_utils.py logit_diff
  (lines 375-412): logits[i, end_i, IO_i] - logits[i, end_i, S_i], averaged over prompts;
- normalised metric: TransformerLens demos/Activation_Patching_in_TL_Demo.ipynb ioi_metric:
  (patched - corrupted) / (clean - corrupted);
- path-patching effect: Easy-Transformer experiments.py plot_path_patching (lines 151-162):
  100 * (patched - clean) / clean.
stdin: {logits [B][T][V], ends [B], io [B], s [B], patched [k], clean, corrupted}
stdout: {per_prompt [B], mean, normalised [k], percent [k]}
"""
import json
import sys

import numpy as np

from _gpt2 import logit_diff

x = json.load(sys.stdin)
ld = logit_diff(np.asarray(x["logits"], dtype=np.float64), np.asarray(x["ends"]), np.asarray(x["io"]), np.asarray(x["s"]))
patched = np.asarray(x["patched"], dtype=np.float64)
clean, corrupted = float(x["clean"]), float(x["corrupted"])
json.dump({
    "per_prompt": ld.tolist(),
    "mean": float(ld.mean()),
    "normalised": ((patched - corrupted) / (clean - corrupted)).tolist(),
    "percent": (100 * (patched - clean) / clean).tolist(),
}, sys.stdout)

"""Port of TransformerLens's head detector (transformer_lens/head_detector.py), written for tflens's tests
from reading get_previous_token_head_detection_pattern, get_duplicate_token_head_detection_pattern,
get_induction_head_detection_pattern, compute_head_attention_similarity_score ("mul" and "abs", with
exclude_bos / exclude_current_token) and detect_head's list branch (stack the per-prompt scores, mean).

stdin:  {"prompts": [{"tokens": [n], "patterns": [layer][head][n][n]}], "options": [{"kind", "exclude_bos",
         "exclude_current_token", "error_measure"}]}
stdout: {"scores": [option][layer][head], "per_prompt": [option][prompt][layer][head]}
"""
import json
import sys

import numpy as np


def previous_token(tokens):
    n = len(tokens)
    p = np.zeros((n, n))
    p[1:, :-1] = np.eye(n - 1)
    return np.tril(p)


def duplicate_token(tokens):
    t = np.asarray(tokens)
    token_pattern = np.tile(t, (len(t), 1))
    eq = np.equal(token_pattern, token_pattern.T).astype(int)
    np.fill_diagonal(eq, 0)
    return np.tril(eq.astype(float))


def induction(tokens):
    dup = duplicate_token(tokens)
    shifted = np.roll(dup, 1, axis=1)
    result = np.concatenate([np.zeros((dup.shape[0], 1)), shifted[:, 1:]], axis=1)
    return np.tril(result)


PATTERNS = {"prev-token": previous_token, "duplicate-token": duplicate_token, "induction": induction}


def similarity(attn, det, exclude_bos, exclude_current_token, error_measure):
    attn = attn.copy()
    if error_measure == "mul":
        if exclude_bos:
            attn[:, 0] = 0
        if exclude_current_token:
            np.fill_diagonal(attn, 0)
        den = attn.sum()
        return float((attn * det).sum() / den) if den != 0 else None  # 0/0: NaN in TransformerLens
    abs_diff = np.abs(attn - det)
    size = len(abs_diff)
    if exclude_bos:
        abs_diff[:, 0] = 0
    if exclude_current_token:
        np.fill_diagonal(abs_diff, 0)
    return 1 - round(float(abs_diff.mean() * size), 3)


def main():
    inp = json.load(sys.stdin)
    scores, per_prompt = [], []
    for opt in inp["options"]:
        rows = []
        for prompt in inp["prompts"]:
            det = PATTERNS[opt["kind"]](prompt["tokens"])
            rows.append([[similarity(np.asarray(h, dtype=np.float32).astype(np.float64), det, opt["exclude_bos"], opt["exclude_current_token"], opt["error_measure"]) for h in layer] for layer in prompt["patterns"]])
        per_prompt.append(rows)
        arr = np.asarray(rows, dtype=np.float64)  # None -> nan
        scores.append([[None if np.isnan(v) else v for v in layer] for layer in arr.mean(axis=0).tolist()])
    json.dump({"scores": scores, "per_prompt": per_prompt}, sys.stdout)


if __name__ == "__main__":
    main()

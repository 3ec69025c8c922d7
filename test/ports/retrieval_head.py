"""Independent port of the retrieval-head score of Wu et al., written for tflens's tests from reading
nightdessert/Retrieval_Head, retrieval_head_detection.py:
  find_needle_idx (lines 249-259) on the answer (real_needle, line 287),
  retrieval_calculate (lines 221-228): top-1 key of the step's query row, hit when it lies in the span
    and the prompt token there equals the generated token, + 1/(span length),
  the ROUGE filter (lines 291-298): rouge_score ROUGE-1 recall (use_stemmer=True, line 63) of the
    answer in the response, x 100, > 50,
  retrieval_head_accumulate (lines 230-233) and the mean of each head's list (line 300).
The tokenizer of rouge_score (tokenize.py) is re-implemented below; the Porter stemmer is NLTK's when
installed (rouge_score's own), otherwise no word is stemmed and the output says so.

stdin: {"n_layers", "n_heads", "samples": [{"prompt": ids, "answer_ids": ids, "answer_text": str,
         "generated": ids, "response": str, "rows": [step][layer][head][key] attention of the
         query row that produced generated[step]}]}
stdout: {"head_counter": {"l-h": [...]}, "mean": {"l-h": float}, "spans": [[s, e]], "recall": [...],
         "counted": [bool], "stemmer": "nltk" | null}
"""
import json
import re
import sys
from collections import Counter

import numpy as np

try:
    from nltk.stem import porter

    STEMMER = porter.PorterStemmer()
except ImportError:  # no stemming without NLTK (reported in the output)
    STEMMER = None


def find_span(prompt, target):
    """First window of len(target) tokens whose token set covers > 90% of the target's set."""
    target_set = set(target)
    for i in range(len(prompt)):
        window = set(prompt[i:i + len(target)])
        if len(window & target_set) / len(target_set) > 0.9:
            return i, i + len(target)
    return -1, -1


def rouge_tokens(text):
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    words = re.split(r"\s+", text)
    if STEMMER is not None:
        words = [STEMMER.stem(w) if len(w) > 3 else w for w in words]
    return [w for w in words if re.match(r"^[a-z0-9]+$", w)]


def rouge1_recall(reference, prediction):
    ref = Counter(rouge_tokens(reference))
    pred = Counter(rouge_tokens(prediction))
    overlap = sum(min(n, pred[w]) for w, n in ref.items())
    return overlap / max(sum(ref.values()), 1)


def sample_scores(sample, n_layers, n_heads, span):
    start, end = span
    prompt = sample["prompt"]
    scores = np.zeros((n_layers, n_heads))
    for step, token in enumerate(sample["generated"]):
        rows = sample["rows"][step]
        for layer in range(n_layers):
            for head in range(n_heads):
                key = int(np.argmax(np.asarray(rows[layer][head])))  # first maximum on ties
                if start <= key < end and key < len(prompt) and token == prompt[key]:
                    scores[layer, head] += 1.0 / (end - start)
    return scores


def main():
    inp = json.load(sys.stdin)
    n_layers, n_heads = inp["n_layers"], inp["n_heads"]
    counter = {f"{l}-{h}": [] for l in range(n_layers) for h in range(n_heads)}
    spans, recalls, counted = [], [], []
    for sample in inp["samples"]:
        span = find_span(sample["prompt"], sample["answer_ids"])
        scores = sample_scores(sample, n_layers, n_heads, span)
        recall = rouge1_recall(sample["answer_text"], sample["response"])
        ok = recall * 100 > 50
        if ok:
            for l in range(n_layers):
                for h in range(n_heads):
                    counter[f"{l}-{h}"].append(float(scores[l, h]))
        spans.append(list(span))
        recalls.append(recall)
        counted.append(ok)
    mean = {k: (float(np.mean(v)) if v else 0.0) for k, v in counter.items()}
    json.dump({"head_counter": counter, "mean": mean, "spans": spans, "recall": recalls, "counted": counted,
               "stemmer": "nltk" if STEMMER is not None else None}, sys.stdout)


main()

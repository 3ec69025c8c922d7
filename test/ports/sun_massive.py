"""Port of Sun et al.'s layer-wise massive-activation statistics (locuslab/massive-activations), written
for tflens's tests from reading main_llm.py lines 83-100 (exp2: per sequence and layer, the three
largest |feature| values of the decoder layer's output and torch.median of |feature|) and
lib/plot_utils_llm.py line 98 (np.mean over sequences).

stdin:  {"feats": [sample][layer][N][d] (decoder-layer outputs of each sample, real tokens only)}
stdout: {"mean": [4][layer]: rows top1, top2, top3, median}
"""
import json
import sys

import numpy as np


def torch_median(x):
    # torch.median returns the lower of the two middle values for an even count
    s = np.sort(x, axis=None)
    return s[(s.size - 1) // 2]


def main():
    inp = json.load(sys.stdin)
    stats = []
    for sample in inp["feats"]:
        layers = [np.abs(np.asarray(f, dtype=np.float64)) for f in sample]
        seq_np = np.zeros((4, len(layers)))
        for layer_id, feat_abs in enumerate(layers):
            values = np.sort(feat_abs.flatten())[::-1]
            seq_np[:3, layer_id] = values[:3]
            seq_np[3, layer_id] = torch_median(feat_abs)
        stats.append(seq_np)
    json.dump({"mean": np.mean(stats, axis=0).tolist()}, sys.stdout)


if __name__ == "__main__":
    main()

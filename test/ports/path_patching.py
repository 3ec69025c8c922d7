"""Port of the IOI authors' path patching (redwoodresearch/Easy-Transformer easy_transformer/ioi_utils.py
path_patching, lines 985-1120, with freeze_mlps=False and have_internal_interactions=False, and the
percentage of experiments.py plot_path_patching, lines 151-162), written for tflens's tests.
Per sender head: pass A caches the sender's hook_result on the corrupted prompts; pass C runs the clean
prompts with every head's q, k and v frozen at their clean values, the sender's result taken from pass A
at the patched positions, and records the receivers' inputs before the freezing overwrites them; pass D
runs the clean prompts with the receivers' inputs from pass C at the patched positions. Receivers absent:
the final residual stream (blocks.{L-1}.hook_resid_post) is the receiver.
stdin: {model, clean, corrupted, mask, reads, io, s, positions [B][k] (patched positions per prompt),
        receivers [[layer, head]] | null, receiver_input 'q'|'k'|'v', sender_layers}
stdout: {values [L][H] (NaN as null), percent [L][H], clean, corrupted}
"""
import json
import sys

import numpy as np

from _gpt2 import GPT2, logit_diff

x = json.load(sys.stdin)
m = GPT2(x["model"])
clean, corrupted, mask = np.asarray(x["clean"]), np.asarray(x["corrupted"]), np.asarray(x["mask"])
reads, io, s = np.asarray(x["reads"]), np.asarray(x["io"]), np.asarray(x["s"])
positions = x["positions"]
B = clean.shape[0]


def metric(logits):
    return float(logit_diff(logits, reads, io, s).mean())


def at_positions(dst, src, head=None):
    """patch_positions: dst[i, pos_i] (head slice when given) = src[i, pos_i]."""
    dst = dst.copy()
    for i in range(B):
        for p in positions[i]:
            if head is None:
                dst[i, p] = src[i, p]
            else:
                dst[i, p, head] = src[i, p, head]
    return dst


sender_cache, target_cache = {}, {}
corr_metric = metric(m.forward(corrupted, mask, cache=sender_cache))  # pass A
clean_metric = metric(m.forward(clean, mask, cache=target_cache))  # pass B
L = m.L
receivers = x["receivers"]
recv_hooks = [(f"blocks.{L - 1}.hook_resid_post", None)] if receivers is None else [
    (f"blocks.{l}.attn.hook_{x['receiver_input']}", h) for l, h in receivers]
values = [[None] * m.H for _ in range(L)]
for ls in x["sender_layers"]:
    for hs in range(m.H):
        receiver_cache = {}
        hooks = {}
        for l in range(L):
            for kind in "qkv":
                name = f"blocks.{l}.attn.hook_{kind}"

                def freeze(a, name=name):
                    if any(name == r for r, _ in recv_hooks):
                        receiver_cache[name] = a  # cached before the freezing overwrites it
                    return target_cache[name]
                hooks[name] = freeze
        sname = f"blocks.{ls}.attn.hook_result"
        hooks[sname] = lambda a, sname=sname, hs=hs: at_positions(a, sender_cache[sname], hs)
        if receivers is None:
            final = f"blocks.{L - 1}.hook_resid_post"
            hooks[final] = lambda a, final=final: receiver_cache.setdefault(final, a)
        m.forward(clean, mask, hooks=hooks)  # pass C
        patch = {}  # several receivers at one hook point: each patches its head, in turn (model.add_hook per receiver)
        for name in {n for n, _ in recv_hooks}:
            heads = [h for n, h in recv_hooks if n == name]

            def apply(a, name=name, heads=heads):
                for h in heads:
                    a = at_positions(a, receiver_cache[name], h)
                return a
            patch[name] = apply
        values[ls][hs] = metric(m.forward(clean, mask, hooks=patch))  # pass D
percent = [[None if v is None else 100 * (v - clean_metric) / clean_metric for v in row] for row in values]
json.dump({"values": values, "percent": percent, "clean": clean_metric, "corrupted": corr_metric}, sys.stdout)

"""A float64 numpy GPT-2 forward with TransformerLens-named hook points, for the patching ports.

Written for tflens's tests from the GPT-2 definition (HF transformers' modeling_gpt2: Conv1D weights,
learned positions, pre-LayerNorm blocks, gelu_new, tied unembedding); it shares no code with tflens.
Left padding: position ids count real tokens (0 for pads); keys at pad positions are never attended to;
a query row whose keys are all hidden (a pad row) attends uniformly, like tflens (only pad rows see it).

Hooks: {name: fn(act) -> act}. Names: blocks.L.hook_resid_pre, attn.hook_q/k/v [B,T,H,dh],
attn.hook_pattern [B,H,T,T], attn.hook_z [B,T,H,dh], attn.hook_result [B,T,H,d], hook_attn_out,
hook_resid_mid, hook_mlp_out, hook_resid_post. `cache` (a dict) receives every activation as it
leaves its hooks.
"""
import json
import struct

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] in ("F32", "F16"), v["dtype"]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype="<f4" if v["dtype"] == "F32" else "<f2").reshape(v["shape"]).astype(np.float64)
    return out


class GPT2:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            self.cfg = json.load(f)
        self.w = load_safetensors(f"{model_dir}/model.safetensors")
        self.L = self.cfg["n_layer"]
        self.H = self.cfg["n_head"]
        self.d = self.cfg["n_embd"]
        self.dh = self.d // self.H
        self.eps = self.cfg.get("layer_norm_epsilon", 1e-5)

    def p(self, name):
        return self.w[f"transformer.{name}"]

    def ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.p(f"{name}.weight") + self.p(f"{name}.bias")

    def forward(self, tokens, mask=None, hooks=None, cache=None):
        """Logits [B, T, V] (float64)."""
        hooks = hooks or {}
        tokens = np.asarray(tokens)
        B, T = tokens.shape
        mask = np.ones((B, T)) if mask is None else np.asarray(mask, dtype=np.float64)

        def hook(name, act):
            if name in hooks:
                act = hooks[name](act)
            if cache is not None:
                cache[name] = act
            return act

        pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(int)
        x = self.p("wte.weight")[tokens] + self.p("wpe.weight")[pos]
        causal = np.tril(np.ones((T, T), dtype=bool))
        visible = causal[None, :, :] & (mask[:, None, :] > 0)  # [B, Tq, Tk]
        H, dh, d = self.H, self.dh, self.d
        for l in range(self.L):
            pre = f"blocks.{l}."
            x = hook(pre + "hook_resid_pre", x)
            h = self.ln(x, f"h.{l}.ln_1")
            qkv = h @ self.p(f"h.{l}.attn.c_attn.weight") + self.p(f"h.{l}.attn.c_attn.bias")
            q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, H, dh) for i in range(3))
            q = hook(pre + "attn.hook_q", q)
            k = hook(pre + "attn.hook_k", k)
            v = hook(pre + "attn.hook_v", v)
            s = (q.transpose(0, 2, 1, 3) @ k.transpose(0, 2, 3, 1)) / np.sqrt(dh)  # [B, H, Tq, Tk]
            s = np.where(visible[:, None], s, -np.inf)
            full = np.isinf(s).all(-1, keepdims=True)
            s = np.where(full, 0.0, s)
            e = np.exp(s - s.max(-1, keepdims=True))
            pat = hook(pre + "attn.hook_pattern", e / e.sum(-1, keepdims=True))
            z = hook(pre + "attn.hook_z", (pat @ v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3))
            WO = self.p(f"h.{l}.attn.c_proj.weight").reshape(H, dh, d)
            res = hook(pre + "attn.hook_result", (z.transpose(0, 2, 1, 3) @ WO[None]).transpose(0, 2, 1, 3))  # [B, T, H, d]
            attn_out = hook(pre + "hook_attn_out", res.sum(2) + self.p(f"h.{l}.attn.c_proj.bias"))
            x = hook(pre + "hook_resid_mid", x + attn_out)
            h2 = self.ln(x, f"h.{l}.ln_2")
            a = h2 @ self.p(f"h.{l}.mlp.c_fc.weight") + self.p(f"h.{l}.mlp.c_fc.bias")
            a = 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))
            mlp_out = hook(pre + "hook_mlp_out", a @ self.p(f"h.{l}.mlp.c_proj.weight") + self.p(f"h.{l}.mlp.c_proj.bias"))
            x = hook(pre + "hook_resid_post", x + mlp_out)
        return self.ln(x, "ln_f") @ self.p("wte.weight").T


def logit_diff(logits, ends, io, s):
    """The IOI logit difference per prompt: logit(IO) - logit(S) at the end position."""
    n = np.arange(len(ends))
    return logits[n, ends, io] - logits[n, ends, s]

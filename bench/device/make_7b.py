#!/usr/bin/env python3
"""A random Llama-2-7B-shaped checkpoint in bfloat16, written shard by shard (bench/run.mjs's llama7b part).

    python3 bench/device/make_7b.py OUT_DIR [--layers 32 --hidden 4096 --heads 32 --kv-heads 32
                                             --mlp 11008 --vocab 32000 --layers-per-shard 4 --seed 0]

Weights are drawn on the GPU when there is one (torch.randn, std 0.02 as HF's initializer_range; norm
weights 1), in bfloat16, moved to the host one shard at a time and written as safetensors files
(model-0000k-of-0000n.safetensors with a model.safetensors.index.json, HF's names and layout) by this
script itself: an 8-byte little-endian header length, the JSON header with {"format": "pt"} metadata,
then the raw little-endian bytes. Peak host memory is one shard. Also writes config.json
(LlamaForCausalLM, torch_dtype bfloat16). With small sizes it makes the tiny checkpoint the bench smoke
test runs through the same code path.
"""
import argparse
import json
import os
import struct
import sys
import time

import torch

DTYPES = {torch.bfloat16: 'BF16', torch.float16: 'F16', torch.float32: 'F32'}


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor on the host). Atomic: a temp file renamed into place."""
    header = {'__metadata__': {'format': 'pt'}}
    off = 0
    for name, t in tensors:
        n = t.numel() * t.element_size()
        header[name] = {'dtype': DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + n]}
        off += n
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)  # the data section starts 8-byte aligned
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for _, t in tensors:
            # bfloat16 has no numpy dtype: write its bits as int16 (same bytes, little-endian hosts)
            f.write(t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32).numpy().tobytes())
    os.replace(tmp, path)
    return off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--layers', type=int, default=32)
    ap.add_argument('--hidden', type=int, default=4096)
    ap.add_argument('--heads', type=int, default=32)
    ap.add_argument('--kv-heads', type=int, default=32)
    ap.add_argument('--mlp', type=int, default=11008)
    ap.add_argument('--vocab', type=int, default=32000)
    ap.add_argument('--max-positions', type=int, default=4096)
    ap.add_argument('--layers-per-shard', type=int, default=4)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    d, H, K, m, V, L = a.hidden, a.heads, a.kv_heads, a.mlp, a.vocab, a.layers
    dh = d // H
    dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    g = torch.Generator(device=dev).manual_seed(a.seed)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    def ones(n):
        return torch.ones(n, dtype=torch.bfloat16)

    os.makedirs(a.out, exist_ok=True)
    groups = [('embed', None)] + [('layers', list(range(i, min(i + a.layers_per_shard, L)))) for i in range(0, L, a.layers_per_shard)] + [('head', None)]
    n_shards = len(groups)
    weight_map = {}
    total = 0
    t0 = time.time()
    for k, (kind, layers) in enumerate(groups):
        tensors = []
        if kind == 'embed':
            tensors.append(('model.embed_tokens.weight', rnd(V, d)))
        elif kind == 'head':
            tensors += [('model.norm.weight', ones(d)), ('lm_head.weight', rnd(V, d))]
        else:
            for l in layers:
                p = f'model.layers.{l}.'
                tensors += [
                    (p + 'input_layernorm.weight', ones(d)),
                    (p + 'self_attn.q_proj.weight', rnd(H * dh, d)),
                    (p + 'self_attn.k_proj.weight', rnd(K * dh, d)),
                    (p + 'self_attn.v_proj.weight', rnd(K * dh, d)),
                    (p + 'self_attn.o_proj.weight', rnd(d, H * dh)),
                    (p + 'post_attention_layernorm.weight', ones(d)),
                    (p + 'mlp.gate_proj.weight', rnd(m, d)),
                    (p + 'mlp.up_proj.weight', rnd(m, d)),
                    (p + 'mlp.down_proj.weight', rnd(d, m)),
                ]
        name = f'model-{k + 1:05d}-of-{n_shards:05d}.safetensors'
        total += write_safetensors(os.path.join(a.out, name), tensors)
        for n, _ in tensors:
            weight_map[n] = name
        del tensors
        print(f'[make_7b] {name}: {total / 2**30:.2f} GiB written ({time.time() - t0:.1f} s)', file=sys.stderr, flush=True)
    with open(os.path.join(a.out, 'model.safetensors.index.json'), 'w') as f:
        json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f, indent=1)
    config = {
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': d, 'num_hidden_layers': L,
        'num_attention_heads': H, 'num_key_value_heads': K, 'intermediate_size': m, 'vocab_size': V,
        'max_position_embeddings': a.max_positions, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0, 'hidden_act': 'silu',
        'tie_word_embeddings': False, 'attention_bias': False, 'mlp_bias': False, 'torch_dtype': 'bfloat16',
        'bos_token_id': 1, 'eos_token_id': 2, 'initializer_range': 0.02,
    }
    with open(os.path.join(a.out, 'config.json'), 'w') as f:
        json.dump(config, f, indent=1)
    print(f'[make_7b] {a.out}: {n_shards} shards, {total / 2**30:.2f} GiB in {time.time() - t0:.1f} s', file=sys.stderr)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""PyTorch baseline for the tflens benchmarks (bench/run.mjs writes the spec and reads the result).

    python3 bench/baseline/torch_bench.py SPEC.json OUT.json

Parts (each optional in the spec):
  matmul     an n x n x n float32 matmul on the same device: the backend's own matmul peak
  forward    a GPT-2-shaped model written as a TransformerLens-style hooked forward: every hook
             point named in spec["cache_names"] is stored (detached) in a dict, as run_with_cache
             does; timed per call, with the cache's bytes and the peak memory
  sweeps     TransformerLens-style head patching of hook_z: one full forward per (layer, head)
             ("head": all positions) or per (layer, pos, head) ("head_pos"), the metric read
             back with .item() after each, as transformer_lens.patching does
  nocache    the same forward without storing anything (logits only), timed per call
  retrieval  HF transformers Qwen2ForCausalLM (eager attention) from a config, random init,
             greedy decoding with output_attentions and a KV cache, the argmax key of the last
             query row of every layer and head read at each step (what the retrieval score needs)
  llama7b    the bf16 checkpoint bench/device/make_7b.py wrote, loaded with HF transformers in bf16
             (eager attention): one forward at the context length (hidden states of every layer
             returned, the logits of the last position), then the retrieval loop above

The model weights are random (seeded, std 0.02), of the same shapes as the tflens run; they are
not the same numbers (timings do not depend on them). With spec["weights_json"] the GPT-2-shaped
model takes its weights from a JSON of TransformerLens-named arrays instead (the smoke test uses
it to check that this baseline computes what tflens computes).
"""
import json
import math
import os
import platform
import resource
import sys
import time

import torch


def log(*a):
    print('[torch]', *a, file=sys.stderr, flush=True)


def sync(dev):
    if dev.type == 'cuda':
        torch.cuda.synchronize()


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class HookedGPT2:
    """A GPT-2 forward with TransformerLens hook points (names, shapes and order)."""

    def __init__(self, cfg, dev, seed=0, std=0.02, weights=None):
        self.cfg = cfg
        self.dev = dev
        d, H, dh, m, V, L, n_ctx = cfg['d_model'], cfg['n_heads'], cfg['d_head'], cfg['d_mlp'], cfg['d_vocab'], cfg['n_layers'], cfg['n_ctx']
        g = torch.Generator(device='cpu').manual_seed(seed)

        def rnd(*shape):
            return (torch.randn(*shape, generator=g) * std).to(dev)

        P = {}
        if weights is not None:
            for k, v in weights.items():
                P[k] = torch.as_tensor(v, dtype=torch.float32).to(dev)
        else:
            P['embed.W_E'] = rnd(V, d)
            P['pos_embed.W_pos'] = rnd(n_ctx, d)
            for l in range(L):
                b = f'blocks.{l}.'
                for ln in ('ln1', 'ln2'):
                    P[b + ln + '.w'] = torch.ones(d, device=dev)
                    P[b + ln + '.b'] = torch.zeros(d, device=dev)
                P[b + 'attn.W_Q'] = rnd(H, d, dh)
                P[b + 'attn.W_K'] = rnd(H, d, dh)
                P[b + 'attn.W_V'] = rnd(H, d, dh)
                P[b + 'attn.W_O'] = rnd(H, dh, d)
                for n_ in ('b_Q', 'b_K', 'b_V'):
                    P[b + 'attn.' + n_] = torch.zeros(H, dh, device=dev)
                P[b + 'attn.b_O'] = torch.zeros(d, device=dev)
                P[b + 'mlp.W_in'] = rnd(d, m)
                P[b + 'mlp.b_in'] = torch.zeros(m, device=dev)
                P[b + 'mlp.W_out'] = rnd(m, d)
                P[b + 'mlp.b_out'] = torch.zeros(d, device=dev)
            P['ln_final.w'] = torch.ones(d, device=dev)
            P['ln_final.b'] = torch.zeros(d, device=dev)
            P['unembed.W_U'] = rnd(d, V)
            P['unembed.b_U'] = torch.zeros(V, device=dev)
        self.P = P
        self.hooks = {}
        self.cache = None
        self.cache_names = set()
        self.seen = set()

    def hook(self, name, x):
        self.seen.add(name)
        for fn in self.hooks.get(name, ()):
            r = fn(x, name)
            if r is not None:
                x = r
        if self.cache is not None and name in self.cache_names:
            self.cache[name] = x.detach()
        return x

    def ln(self, x, prefix):
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook(prefix + '.hook_scale', (x.pow(2).mean(-1, keepdim=True) + self.cfg['eps']).sqrt())
        return self.hook(prefix + '.hook_normalized', (x / scale) * self.P[prefix + '.w'] + self.P[prefix + '.b'])

    def forward(self, tokens):
        P, c = self.P, self.cfg
        B, T = tokens.shape
        L, dh = c['n_layers'], c['d_head']
        resid = self.hook('hook_embed', P['embed.W_E'][tokens]) + self.hook('hook_pos_embed', P['pos_embed.W_pos'][:T].unsqueeze(0).expand(B, T, -1))
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=self.dev))
        for l in range(L):
            b = f'blocks.{l}.'
            resid = self.hook(b + 'hook_resid_pre', resid)
            x = self.ln(resid, b + 'ln1')
            q = self.hook(b + 'attn.hook_q', torch.einsum('btd,hde->bthe', x, P[b + 'attn.W_Q']) + P[b + 'attn.b_Q'])
            k = self.hook(b + 'attn.hook_k', torch.einsum('btd,hde->bthe', x, P[b + 'attn.W_K']) + P[b + 'attn.b_K'])
            v = self.hook(b + 'attn.hook_v', torch.einsum('btd,hde->bthe', x, P[b + 'attn.W_V']) + P[b + 'attn.b_V'])
            scores = torch.einsum('bqhe,bkhe->bhqk', q, k) / math.sqrt(dh)
            scores = self.hook(b + 'attn.hook_attn_scores', torch.where(causal, scores, torch.tensor(float('-inf'), device=self.dev)))
            pattern = self.hook(b + 'attn.hook_pattern', torch.softmax(scores, dim=-1))
            z = self.hook(b + 'attn.hook_z', torch.einsum('bkhe,bhqk->bqhe', v, pattern))
            attn_out = self.hook(b + 'hook_attn_out', torch.einsum('bqhe,hed->bqd', z, P[b + 'attn.W_O']) + P[b + 'attn.b_O'])
            resid = self.hook(b + 'hook_resid_mid', resid + attn_out)
            x = self.ln(resid, b + 'ln2')
            pre = self.hook(b + 'mlp.hook_pre', x @ P[b + 'mlp.W_in'] + P[b + 'mlp.b_in'])
            post = self.hook(b + 'mlp.hook_post', gelu_new(pre))
            mlp_out = self.hook(b + 'hook_mlp_out', post @ P[b + 'mlp.W_out'] + P[b + 'mlp.b_out'])
            resid = self.hook(b + 'hook_resid_post', resid + mlp_out)
        x = self.hook('unembed.hook_in', self.ln(resid, 'ln_final'))
        return self.hook('unembed.hook_out', x @ P['unembed.W_U'] + P['unembed.b_U'])

    def run_with_cache(self, tokens, names):
        self.cache, self.cache_names = {}, set(names)
        try:
            logits = self.forward(tokens)
            return logits, self.cache
        finally:
            self.cache = None

    def run_with_hooks(self, tokens, fwd_hooks):
        for name, fn in fwd_hooks:
            self.hooks.setdefault(name, []).append(fn)
        try:
            return self.forward(tokens)
        finally:
            self.hooks = {}


def bytes_of(cache):
    return sum(t.numel() * t.element_size() for t in cache.values())


def maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_matmul(spec, dev):
    n, reps = spec['n'], spec.get('reps', 10)
    g = torch.Generator(device='cpu').manual_seed(1)
    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    for _ in range(2):
        c = a @ b
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    sync(dev)
    dt = (time.perf_counter() - t0) / reps
    return {'n': n, 'reps': reps, 'seconds': dt, 'flops': 2 * n ** 3, 'flops_per_s': 2 * n ** 3 / dt}


def timed_runs(run, case, dev):
    """case['warmup'] (default 1) untimed runs, then case['reps'] (default 3) timed ones, each synchronised; returns the times."""
    for _ in range(case.get('warmup', 1)):
        run()
    sync(dev)
    times = []
    for _ in range(case.get('reps', 3)):
        t0 = time.perf_counter()
        run()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def bench_forward(model, spec, dev, names):
    out = []
    for case in spec['cases']:
        B, T, reps = case['B'], case['T'], case.get('reps', 3)
        g = torch.Generator(device='cpu').manual_seed(7)
        tokens = torch.randint(0, model.cfg['d_vocab'], (B, T), generator=g).to(dev)
        with torch.inference_mode():
            # memory: one run, measured on its own
            if dev.type == 'cuda':
                torch.cuda.empty_cache()
                sync(dev)
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            rss0 = maxrss_bytes()
            logits, cache = model.run_with_cache(tokens, names)
            sync(dev)
            mem = {'cache_bytes': bytes_of(cache), 'cached_tensors': len(cache), 'logits_bytes': logits.numel() * logits.element_size()}
            if dev.type == 'cuda':
                mem['peak_bytes'] = torch.cuda.max_memory_allocated() - base
                mem['peak_kind'] = 'torch.cuda.max_memory_allocated() minus allocated before the run'
            else:
                mem['peak_bytes'] = maxrss_bytes() - rss0
                mem['peak_kind'] = 'growth of the process max RSS (ru_maxrss) during the first run; 0 when an earlier run already reached it'
            missing = sorted(set(names) - set(cache))
            del logits, cache
            times = timed_runs(lambda: model.run_with_cache(tokens, names), case, dev)
        out.append({'B': B, 'T': T, 'reps': reps, 'seconds': sorted(times)[len(times) // 2], 'all_seconds': times, 'memory': mem, 'names_missing': missing})
        log(f'forward B={B} T={T}: {out[-1]["seconds"]:.4f} s')
    return out


def bench_nocache(model, spec, dev):
    out = []
    for case in spec['cases']:
        B, T, reps = case['B'], case['T'], case.get('reps', 3)
        g = torch.Generator(device='cpu').manual_seed(7)
        tokens = torch.randint(0, model.cfg['d_vocab'], (B, T), generator=g).to(dev)
        with torch.inference_mode():
            times = timed_runs(lambda: model.forward(tokens), case, dev)
        out.append({'B': B, 'T': T, 'reps': reps, 'seconds': sorted(times)[len(times) // 2], 'all_seconds': times})
        log(f'forward (no cache) B={B} T={T}: {out[-1]["seconds"]:.4f} s')
    return out


def metric_fn(p, dev):
    N = len(p['clean'])
    rows = torch.arange(N, device=dev)
    rp = torch.tensor(p['readPositions'], device=dev)
    cor = torch.tensor(p['correct'], device=dev)
    wr = torch.tensor(p['wrong'], device=dev)

    def metric(logits):
        sel = logits[rows, rp]
        return (sel[rows, cor] - sel[rows, wr]).mean()
    return metric


def bench_sweeps(model, spec, dev):
    L, H = model.cfg['n_layers'], model.cfg['n_heads']
    out = {}
    for run in spec['runs']:
        kind, p = run['kind'], run['problem']
        clean = torch.tensor(p['clean'], device=dev)
        corrupted = torch.tensor(p['corrupted'], device=dev)
        metric = metric_fn(p, dev)
        T = clean.shape[1]
        with torch.inference_mode():
            # warm-up: one patched forward (kernel selection, allocator)
            metric(model.forward(corrupted)).item()
            sync(dev)
            t_all = time.perf_counter()
            _, clean_cache = model.run_with_cache(clean, [f'blocks.{l}.attn.hook_z' for l in range(L)])
            clean_metric = metric(model.forward(clean)).item()
            corrupted_metric = metric(model.forward(corrupted)).item()
            setup = time.perf_counter() - t_all
            t0 = time.perf_counter()
            if kind == 'head':
                vals = [[0.0] * H for _ in range(L)]
                for l in range(L):
                    name = f'blocks.{l}.attn.hook_z'
                    for h in range(H):
                        def patch(z, _n, h=h, name=name):
                            z[:, :, h, :] = clean_cache[name][:, :, h, :]
                            return z
                        vals[l][h] = metric(model.run_with_hooks(corrupted, [(name, patch)])).item()
                forwards = L * H
            elif kind == 'head_pos':
                vals = [[[0.0] * H for _ in range(T)] for _ in range(L)]
                for l in range(L):
                    name = f'blocks.{l}.attn.hook_z'
                    for t in range(T):
                        for h in range(H):
                            def patch(z, _n, h=h, t=t, name=name):
                                z[:, t, h, :] = clean_cache[name][:, t, h, :]
                                return z
                            vals[l][t][h] = metric(model.run_with_hooks(corrupted, [(name, patch)])).item()
                forwards = L * H * T
            else:
                raise SystemExit(f'unknown sweep kind {kind!r}')
            dt = time.perf_counter() - t0
        out[kind] = {'seconds': dt + setup, 'loop_seconds': dt, 'setup_seconds': setup, 'forwards': forwards + 3, 'values': vals,
                     'clean': clean_metric, 'corrupted': corrupted_metric, 'N': clean.shape[0], 'T': T}
        log(f'sweep {kind}: {dt + setup:.3f} s, {forwards} forwards')
    return out


def retrieval_samples(model, vocab, ctx, new, samples, dev, seed=11):
    """Greedy decoding with eager attention and output_attentions, reading the last row's argmax per head."""
    g = torch.Generator(device='cpu').manual_seed(seed)
    results = []
    for s in range(samples):
        ids = torch.randint(0, vocab, (1, ctx), generator=g).to(dev)
        with torch.inference_mode():
            sync(dev)
            t0 = time.perf_counter()
            try:  # unembed the last position only, as tflens (and HF generate)
                out = model(input_ids=ids, use_cache=True, output_attentions=True, logits_to_keep=1)
            except TypeError:
                out = model(input_ids=ids, use_cache=True, output_attentions=True)
            past = out.past_key_values
            tops = [[int(x) for x in a[0, :, -1, :].argmax(-1).tolist()] for a in out.attentions]
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            del out
            steps = 1
            for _ in range(new - 1):
                out = model(input_ids=tok, past_key_values=past, use_cache=True, output_attentions=True)
                past = out.past_key_values
                tops = [[int(x) for x in a[0, :, -1, :].argmax(-1).tolist()] for a in out.attentions]
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                del out
                steps += 1
            sync(dev)
            dt = time.perf_counter() - t0
        del past
        results.append({'seconds': dt, 'steps': steps, 'layers_read': len(tops)})
        log(f'retrieval sample {s}: {dt:.3f} s for {steps} tokens at context {ctx}')
    return results


def eager(model):
    if getattr(model.config, '_attn_implementation', None) != 'eager' and hasattr(model, 'set_attn_implementation'):
        model.set_attn_implementation('eager')
    return getattr(model.config, '_attn_implementation', None)


def per_sample(results):
    rest = results[1:] if len(results) > 1 else results
    return sorted(r['seconds'] for r in rest)[(len(rest) - 1) // 2]


def bench_retrieval(spec, dev):
    import transformers
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**spec['hf_config'])
    torch.manual_seed(spec.get('seed', 0))
    try:
        cfg._attn_implementation = 'eager'
    except Exception:
        pass
    with torch.device(dev):
        try:
            model = Qwen2ForCausalLM._from_config(cfg, attn_implementation='eager')
        except TypeError:
            model = Qwen2ForCausalLM(cfg)
    model = model.to(dev).float().eval()
    impl = eager(model)
    results = retrieval_samples(model, cfg.vocab_size, spec['context'], spec['new_tokens'], spec.get('samples', 2), dev)
    peak = torch.cuda.max_memory_allocated() if dev.type == 'cuda' else None
    return {'context': spec['context'], 'new_tokens': spec['new_tokens'], 'samples': results, 'attn_implementation': impl, 'transformers': transformers.__version__,
            'seconds_per_sample': per_sample(results),
            'note': 'median of the samples after the first (the warm-up)' if len(results) > 1 else 'single sample (includes warm-up)', 'peak_bytes': peak}


def bench_llama7b(spec, dev):
    import transformers
    from transformers import LlamaForCausalLM
    t0 = time.perf_counter()
    try:
        model = LlamaForCausalLM.from_pretrained(spec['dir'], dtype=torch.bfloat16, attn_implementation='eager')
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(spec['dir'], torch_dtype=torch.bfloat16, attn_implementation='eager')
    model = model.to(dev, dtype=torch.bfloat16).eval()  # bf16 whichever keyword this transformers version read
    sync(dev)
    load = time.perf_counter() - t0
    impl = eager(model)
    ctx = spec['context']
    ids = torch.randint(0, model.config.vocab_size, (1, ctx), generator=torch.Generator(device='cpu').manual_seed(17)).to(dev)
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for _ in range(2):  # the first is the warm-up
            sync(dev)
            t = time.perf_counter()
            out = model(input_ids=ids, use_cache=False, output_hidden_states=True, logits_to_keep=1)
            sync(dev)
            times.append(time.perf_counter() - t)
            del out
    peak = torch.cuda.max_memory_allocated() if dev.type == 'cuda' else None
    results = retrieval_samples(model, model.config.vocab_size, ctx, spec['new_tokens'], spec.get('samples', 2), dev)
    log(f'llama7b: forward at {ctx} tokens {times[-1]:.3f} s; retrieval {per_sample(results):.3f} s per sample')
    return {'context': ctx, 'load_seconds': load, 'forward_seconds': times[-1], 'forward_peak_bytes': peak, 'samples': results,
            'seconds_per_sample': per_sample(results), 'attn_implementation': impl, 'dtype': 'bfloat16', 'transformers': transformers.__version__}


def main():
    spec = json.load(open(sys.argv[1]))
    dev = torch.device(spec.get('device', 'cpu'))
    if dev.type == 'cpu' and spec.get('threads'):
        torch.set_num_threads(int(spec['threads']))
    res = {'torch': torch.__version__, 'device': str(dev), 'threads': torch.get_num_threads(), 'python': platform.python_version(),
           'gpu': torch.cuda.get_device_name(0) if dev.type == 'cuda' else None,
           'tf32_matmul': torch.backends.cuda.matmul.allow_tf32 if dev.type == 'cuda' else None}
    if 'matmul' in spec:
        res['matmul'] = bench_matmul(spec['matmul'], dev)
        log(f'matmul {spec["matmul"]["n"]}: {res["matmul"]["flops_per_s"] / 1e9:.1f} GFLOP/s')
    model = None
    if 'forward' in spec or 'nocache' in spec or 'sweeps' in spec or 'check' in spec:
        weights = None
        if spec.get('weights_json'):  # {name: {shape, data}} (the smoke test's cross-check)
            W = json.load(open(spec['weights_json']))
            weights = {k: torch.tensor(v['data'], dtype=torch.float32).reshape(v['shape']) for k, v in W.items()}
        model = HookedGPT2(spec['model'], dev, seed=spec.get('seed', 0), weights=weights)
    if 'check' in spec:
        # logits and a few cached activations for a given token batch (smoke-test cross-check)
        with torch.inference_mode():
            tokens = torch.tensor(spec['check']['tokens'], device=dev)
            logits, cache = model.run_with_cache(tokens, spec['check']['names'])
            res['check'] = {'logits': logits.cpu().tolist(), 'cache': {k: v.cpu().reshape(-1).tolist() for k, v in cache.items()}}
    if 'forward' in spec:
        res['forward'] = bench_forward(model, spec['forward'], dev, spec['cache_names'])
    if 'nocache' in spec:
        res['nocache'] = bench_nocache(model, spec['nocache'], dev)
    if 'sweeps' in spec:
        res['sweeps'] = bench_sweeps(model, spec['sweeps'], dev)
    if model is not None:
        res['hook_points_unknown'] = sorted(set(spec.get('cache_names', [])) - model.seen) if model.seen else []
    del model
    if 'retrieval' in spec:
        try:
            res['retrieval'] = bench_retrieval(spec['retrieval'], dev)
        except Exception as e:  # e.g. no transformers on this machine: report, keep the other parts
            log(f'retrieval failed: {type(e).__name__}: {e}')
            res['retrieval_error'] = f'{type(e).__name__}: {e}'
    if 'llama7b' in spec:
        try:
            res['llama7b'] = bench_llama7b(spec['llama7b'], dev)
        except Exception as e:
            log(f'llama7b failed: {type(e).__name__}: {e}')
            res['llama7b_error'] = f'{type(e).__name__}: {e}'
    tmp = sys.argv[2] + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(res, f)
    os.replace(tmp, sys.argv[2])


if __name__ == '__main__':
    main()

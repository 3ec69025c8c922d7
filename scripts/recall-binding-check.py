"""Is key/value binding learnable at a given size? A PyTorch check beside the recall model (src/zoo/recall.ts).

The task is recall's induction-friendly format: filler sentences ending in ".", needle sentences
"key is K V ." (the needle and 2-5 distractor pairs, at random sentence boundaries), then questions
"what key is K" whose answer is V (each pair asked --repeats times, in random order). The loss reads
the answer and the token after it. Accuracy: the first question's answer with 3 distractor pairs
(chance 1/4 for a model that picks any value present). Token ids follow RECALL_VOCAB's layout.

    python3 scripts/recall-binding-check.py --d-model 64 --heads 4 --layers 2 --lr 1e-3 --batch 32 --lengths 16 48

On the CPU here (torch 1.13, 2 threads) that run reached 0.24 / 0.58 / 0.96 / 1.00 at steps 750 / 1,000 / 1,500 /
2,000 (about 2 minutes). After 2,500 steps, seeds 0 / 1 / 2: as above 1.00 / 1.00 / 0.29; --llama 0.26 / 0.27 / 0.26;
--init-std 0.02 0.21 / 0.31 / 0.29. With --d-model 128 --heads 16 --layers 4 (d_head 8) it stayed at 0.20-0.32 for 2,250
steps. --induction 0.25 (a quarter of each batch: a random filler sequence repeated, the loss on the repeat) makes the
binding come sooner: seeds 2 / 3 / 4 reach 1.00 / 0.99 / 1.00 at steps 1,500 / 1,250 / 2,000, where without it they
are at 0.29 / 0.29 / 0.18 after 2,500 / 2,000 / 1,750 steps (one thread each). No tflens code is used.
"""
import argparse
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BOS, DOT, KEY, IS, WHAT, NL = 0, 2, 3, 5, 6, 7
FILLER, KEYS, VALUES, VOCAB = list(range(8, 48)), list(range(48, 64)), list(range(64, 80)), 80


def row(rnd, length, distractors, repeats):
    keys, values = rnd.sample(KEYS, distractors + 1), rnd.sample(VALUES, distractors + 1)
    sentences = []
    while sum(map(len, sentences)) < length:
        sentences.append([rnd.choice(FILLER) for _ in range(rnd.randint(4, 12))] + [DOT])
    for k, v in zip(keys, values):
        sentences.insert(rnd.randint(0, len(sentences)), [KEY, IS, k, v, DOT])
    pairs = list(zip(keys, values))
    asked = [pairs[0]] + rnd.sample(pairs * repeats, len(pairs) * repeats)
    x = [BOS] + [t for s in sentences for t in s]
    w = [0] * len(x)  # w[p] = 1: the loss reads the prediction made at position p
    for k, v in asked:
        x += [WHAT, KEY, IS, k, v, NL]
        w += [0, 0, 0, 1, 1, 0]
    return x, w


def induction_row(rnd, length):
    """BOS, a random filler sequence, the same sequence again; the loss reads the second copy."""
    half = [rnd.choice(FILLER) for _ in range((length - 1) // 2)]
    return [BOS] + half + half, [0] * (1 + len(half)) + [1] * (len(half) - 1) + [0]


def batch(rnd, n, lengths, repeats, distractors=None, device='cpu', induction=0.0):
    length = rnd.randint(*lengths)
    pairs = distractors if distractors is not None else rnd.randint(2, 5)  # one count for the batch
    rows = [row(rnd, length, pairs, repeats) for _ in range(n)]
    for i in range(round(induction * n)):  # --induction: these rows become repeated random sequences
        rows[i] = induction_row(rnd, len(rows[i][0]))
    T = max(len(x) for x, _ in rows)
    X, W = torch.zeros(n, T, dtype=torch.long), torch.zeros(n, T)
    for i, (x, w) in enumerate(rows):
        X[i, : len(x)] = torch.tensor(x)
        W[i, : len(w)] = torch.tensor(w, dtype=torch.float)
    return X.to(device), W.to(device)


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class GatedMLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False), nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """GPT-style (LayerNorm, GELU MLP, biases) or, with llama, LLaMA-style (RMSNorm, gated SiLU MLP, no biases)."""

    def __init__(self, d, heads, llama=False, kv_heads=None, d_head=None):
        super().__init__()
        self.heads, self.kv = heads, kv_heads or heads
        self.dh = dh = d_head or d // heads
        norm = RMSNorm if llama else nn.LayerNorm
        self.ln1, self.ln2 = norm(d), norm(d)
        self.qkv, self.o = nn.Linear(d, (heads + 2 * self.kv) * dh, bias=not llama), nn.Linear(heads * dh, d, bias=not llama)
        self.mlp = GatedMLP(d, 2 * d) if llama else nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x, rope):
        B, T, D = x.shape
        dh, g = self.dh, self.heads // self.kv
        q, k, v = self.qkv(self.ln1(x)).split([self.heads * dh, self.kv * dh, self.kv * dh], -1)
        q, k, v = q.view(B, T, self.heads, dh), k.view(B, T, self.kv, dh), v.view(B, T, self.kv, dh)
        q, k, v = rope(q).transpose(1, 2), rope(k).transpose(1, 2), v.transpose(1, 2)
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)  # grouped-query attention
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float('-inf'))
        x = x + self.o((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.heads * dh))
        return x + self.mlp(self.ln2(x))


class Model(nn.Module):
    """Pre-norm transformer with rotary positions (d_head defaults to d_model / heads)."""

    def __init__(self, d, heads, layers, llama=False, kv_heads=None, d_head=None):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        self.blocks = nn.ModuleList([Block(d, heads, llama, kv_heads, d_head) for _ in range(layers)])
        self.ln, self.out = (RMSNorm(d) if llama else nn.LayerNorm(d)), nn.Linear(d, VOCAB, bias=not llama)
        dh = d_head or d // heads
        self.register_buffer('inv_freq', 1.0 / (10000 ** (torch.arange(0, dh, 2).float() / dh)))

    def forward(self, x):
        angles = torch.arange(x.shape[1], device=x.device).float()[:, None] * self.inv_freq[None]
        cos, sin = angles.cos()[None, :, None], angles.sin()[None, :, None]

        def rope(t):
            a, b = t[..., 0::2], t[..., 1::2]
            return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)

        y = self.emb(x)
        for blk in self.blocks:
            y = blk(y, rope)
        return self.out(self.ln(y))


def accuracy(model, lengths, device, n=200):
    rnd, correct = random.Random(777), 0
    with torch.no_grad():
        for _ in range(n // 50):
            X, W = batch(rnd, 50, lengths, 1, distractors=3, device=device)
            logits = model(X[:, :-1])
            at = (W[:, :-1] > 0).float().argmax(1)  # the first question's key: it predicts the value
            rows = torch.arange(50, device=device)
            correct += (logits[rows, at].argmax(-1) == X[rows, at + 1]).sum().item()
    return correct / n


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--d-model', type=int, default=64)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--d-head', type=int, default=None, help='head width; default d_model / heads')
    p.add_argument('--kv-heads', type=int, default=None, help='key/value heads (grouped-query attention); default --heads')
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--lengths', type=int, nargs=2, default=[16, 48])
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--induction', type=float, default=0.0, help='share of each batch made of repeated random filler sequences (loss on the second copy)')
    p.add_argument('--every', type=int, default=250)
    p.add_argument('--llama', action='store_true', help='RMSNorm, gated SiLU MLP, no biases (as the recall model)')
    p.add_argument('--init-std', type=float, default=None, help='every weight matrix and embedding ~ N(0, std^2) (tflens randomModel uses 0.02); default PyTorch init')
    p.add_argument('--seed', type=int, default=0, help='torch seed; the data stream uses seed + 1')
    p.add_argument('--seconds', type=float, default=float('inf'), help='stop after this much training time')
    a = p.parse_args()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(a.seed)
    model = Model(a.d_model, a.heads, a.layers, a.llama, a.kv_heads, a.d_head).to(device)
    if a.init_std is not None:
        with torch.no_grad():
            for w in model.parameters():
                if w.dim() == 2:
                    w.normal_(0.0, a.init_std)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.99))
    rnd, t0 = random.Random(a.seed + 1), time.time()
    for step in range(1, a.steps + 1):
        X, W = batch(rnd, a.batch, a.lengths, a.repeats, device=device, induction=a.induction)
        nll = F.cross_entropy(model(X[:, :-1]).reshape(-1, VOCAB), X[:, 1:].reshape(-1), reduction='none')
        loss = (nll * W[:, :-1].reshape(-1)).sum() / W[:, :-1].sum()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = time.time() - t0 > a.seconds
        if step % a.every == 0 or done:
            print(f'step {step} {time.time() - t0:.0f}s loss {loss.item():.3f} accuracy (3 distractor pairs) {accuracy(model, a.lengths, device):.3f}', flush=True)
        if done:
            break


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Lever probe for issue 17: keys quantized per channel *before* RoPE (KVQuant) against after.

Reads an mqdump reference snapshot (f16 K/V, real post-RoPE queries; llama.cpp "norm" RoPE:
adjacent dimension pairs (2i, 2i+1) rotated by p * base^(-2i/d)), undoes RoPE on the keys with the
positions and base the file records, quantizes them per channel with mqkv (the real writer and
decoder: measured bytes), re-applies RoPE, and compares with quantizing the post-RoPE keys
directly. Values stay exact, so the attention-output and -score cosines isolate the keys' error.
No format change: this measures whether the lever is worth one.

  python bench/frontier/prerope_probe.py REF.mqkv [--levels 4,5,6,8]
"""
from __future__ import annotations

import argparse

import numpy as np

import mqkv


def rope(x: np.ndarray, pos: np.ndarray, base: float, sign: float) -> np.ndarray:
    """x [n, heads, d] rotated by sign * pos * base^(-2i/d) on pairs (2i, 2i+1), in float64."""
    d = x.shape[-1]
    theta = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = sign * pos.astype(np.float64)[:, None, None] * theta[None, None, :]
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2].astype(np.float64), x[..., 1::2].astype(np.float64)
    out = np.empty(x.shape, dtype=np.float64)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = k @ q / np.sqrt(q.shape[0])
    w = np.exp(w - w.max())
    w /= w.sum()
    return w, w @ v


def cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else float(na == nb)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("--levels", default="4,5,6,8")
    ap.add_argument("--group", type=int, default=64)
    args = ap.parse_args()
    snap = mqkv.open(args.ref)
    m = snap.model
    if m.rope_type != "norm" or not m.rope_base:
        raise SystemExit(f"{args.ref}: rope_type {m.rope_type!r}, base {m.rope_base}: this probe does llama.cpp 'norm' RoPE only")
    n = snap.find(0, "k").n_tokens
    pos = np.asarray(m.positions if len(m.positions) else range(n), dtype=np.int64)[:n]
    print(f"{args.ref}: {m.n_layer} layers, {n} tokens, rope {m.rope_type} base {m.rope_base:g}")
    layers = [t.layer for t in snap.tensors if t.kind == "k"]
    ks = {l: snap.decode(l, "k", dtype="float32") for l in layers}
    vs = {l: snap.decode(l, "v", dtype="float32") for l in layers}
    qs = {l: (snap.decode(l, "q", dtype="float32"), snap.find(l, "q").positions) for l in layers if snap.find(l, "q")}
    # Sanity: un-RoPE'd keys have steadier channels (the reason the lever exists): mean over
    # layers of the per-channel |mean| / std across tokens.
    def channel_ratio(k):
        return float(np.mean(np.abs(k.mean(axis=0)) / (k.std(axis=0) + 1e-9)))
    pre = {l: rope(ks[l], pos, m.rope_base, -1.0).astype(np.float32) for l in layers}
    print(f"per-channel |mean|/std: post-RoPE {np.mean([channel_ratio(ks[l]) for l in layers]):.3f}, "
          f"pre-RoPE {np.mean([channel_ratio(pre[l]) for l in layers]):.3f}")
    print("| K codec (per channel, rANS) | where | K bits/dim | K rel. MSE | attn-output cos | attn-score cos |")
    print("|---|---|---:|---:|---:|---:|")
    for lv in [int(x) for x in args.levels.split(",")]:
        spec = f"affine:levels={lv},group={args.group},meta=4,axis=channel,entropy=rans"
        for where in ("post-RoPE", "pre-RoPE"):
            stored = vals = 0
            err = ref_e = 0.0
            oc, sc = [], []
            for l in layers:
                if where == "post-RoPE":
                    qz = mqkv.quantize(ks[l], spec)
                    kd = qz.array.astype(np.float64)
                else:
                    qz = mqkv.quantize(pre[l], spec)
                    kd = rope(qz.array, pos, m.rope_base, +1.0)
                stored += qz.stored_bytes
                vals += ks[l].size
                err += float(((kd - ks[l]) ** 2).sum())
                ref_e += float((ks[l].astype(np.float64) ** 2).sum())
                if l not in qs:
                    continue
                q, qpos = qs[l]
                n_q, n_kv = q.shape[1], ks[l].shape[1]
                for r, p in enumerate(qpos):
                    for h in range(n_q):
                        g = h // (n_q // n_kv)
                        wr, orf = attention(q[r, h].astype(np.float64), ks[l][: p + 1, g].astype(np.float64), vs[l][: p + 1, g].astype(np.float64))
                        wd, od = attention(q[r, h].astype(np.float64), kd[: p + 1, g], vs[l][: p + 1, g].astype(np.float64))
                        oc.append(cos(orf, od))
                        sc.append(cos(wr, wd))
            print(f"| `{spec}` | {where} | {8 * stored / vals:.3f} | {err / ref_e:.4e} | {np.mean(oc):.5f} | {np.mean(sc):.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""End-to-end: a real llama.cpp KV cache through mqkv and back into llama.cpp.

SmolLM2-135M evaluates a public-domain text prefix; its sequence state is converted with
mqconvert to mqkv (lossless f16 and three low-bit codecs), back to a llama.cpp state, loaded into
a fresh (emptied) context, and the next tokens are evaluated teacher-forced in the original and the restored
context. Lossless must give bit-identical logits (asserted); the codecs are reported beside
llama.cpp's own q8_0/q4_0 caches on the same text. Also checked: byte-identical state files after
f16 round trips of both V layouts, and the adapter's q8_0 writer (Hadamard rotation + ggml
quantization) against the engine's own q8_0 cache.

Run through tests/e2e/run.sh (sets up the engine, builds the tools).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import filecmp
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import mqkv_engine as eng  # noqa: E402

CODECS = [
    ("a", "f16", "lossless f16"),
    ("b", "affine:bits=4,group=32", "affine 4-bit g32"),
    ("c", "affine_seven_level_3bit_g64_meta4", "affine 3-bit (7 levels) g64 meta4"),
    ("d", "hadamard_affine_four_level_2bit_g64_meta8", "Hadamard + affine 2-bit (4 levels) g64 meta8"),
]


def compare(ref: np.ndarray, got: np.ndarray, cont: list[int]) -> dict:
    """Rows i predict cont[i + 1]. KL(ref || got) and top-1 agreement over all rows; perplexity
    of cont[1:] under `got`."""
    lr, lg = eng.log_softmax(ref), eng.log_softmax(got)
    kl = (np.exp(lr) * (lr - lg)).sum(axis=-1)
    top1 = (ref.argmax(-1) == got.argmax(-1)).mean()
    nll = -lg[np.arange(len(cont) - 1), cont[1:]]
    return {"kl_mean": float(kl.mean()), "kl_max": float(kl.max()), "top1": float(top1),
            "ppl": float(np.exp(nll.mean())), "bit_identical": bool(np.array_equal(ref, got))}


def kv_elements(info: dict) -> int:
    return sum(int(np.prod(t["shape"])) for t in info["tensors"] if t["kind"] in ("k", "v"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", required=True, help="folder holding mqconvert and mqinfo")
    ap.add_argument("--model", default=eng.default_model())
    ap.add_argument("--text", default="data/texts/pride-and-prejudice-ch1.txt")
    ap.add_argument("--prefix", type=int, default=768)
    ap.add_argument("--cont", type=int, default=128)
    ap.add_argument("--work", required=True, help="scratch folder")
    ap.add_argument("--results", default="", help="folder for RESULTS.md and results.csv (empty: print only)")
    args = ap.parse_args()
    t_start = time.time()
    conv = os.path.join(args.tools, "mqconvert")
    mqinfo = os.path.join(args.tools, "mqinfo")
    w = lambda name: os.path.join(args.work, name)
    os.makedirs(args.work, exist_ok=True)
    failures, checks = [], []

    def check(cond: bool, what: str):
        print(("ok   " if cond else "FAIL ") + what)
        checks.append(("ok" if cond else "FAIL") + ": " + what)
        if not cond:
            failures.append(what)

    text = open(args.text, encoding="utf-8").read()
    n_ctx = args.prefix + args.cont + 16
    base = eng.load(args.model, n_ctx=n_ctx, flash_attn=True)
    tokens = base.tokenize(text.encode(), add_bos=True)
    if len(tokens) < args.prefix + args.cont:
        raise SystemExit(f"{args.text}: {len(tokens)} tokens < {args.prefix} + {args.cont}")
    prefix, cont = tokens[: args.prefix], tokens[args.prefix: args.prefix + args.cont]

    # The original: f16 cache, flash attention (V rows, v_trans 0).
    eng.evaluate(base, prefix)
    eng.save_seq(base, w("orig.bin"), prefix)
    ref = eng.evaluate(base, cont)
    del base
    raw_elems = None
    rows = []

    fresh = {}  # one restore context per cache type; restore_seq empties it before each load

    def restored_logits(state: str, cache_type: str = "f16") -> np.ndarray:
        if cache_type not in fresh:
            fresh[cache_type] = eng.load(args.model, n_ctx=n_ctx, flash_attn=True, cache_type=cache_type)
        ctx = fresh[cache_type]
        got = eng.restore_seq(ctx, state)
        check(got == prefix, f"{os.path.basename(state)}: tokens restored")
        return eng.evaluate(ctx, cont)

    for tag, codec, label in CODECS:
        mq, back = w(f"{tag}.mqkv"), w(f"{tag}.bin")
        eng.run([conv, "-q", w("orig.bin"), mq, "--codec", codec])
        eng.run([conv, "-q", mq, back, "--to", "llama-seq"])
        info = json.loads(eng.run([mqinfo, "--json", mq]))
        raw_elems = kv_elements(info)
        m = compare(ref, restored_logits(back), cont)
        m.update(case=f"({tag}) mqkv {codec}", label=label, file_bytes=info["file_bytes"],
                 bits_per_dim=8.0 * info["file_bytes"] / raw_elems)
        rows.append(m)
        if tag == "a":
            check(filecmp.cmp(w("orig.bin"), back, shallow=False), "(a) f16 seq state -> mqkv -> seq state is byte-identical")
            check(m["bit_identical"], "(a) logits after the lossless round trip are bit-identical")

    # llama.cpp's own quantized caches on the same text (flash attention, as a quantized V needs).
    for ct in ("q8_0", "q4_0"):
        ctx = eng.load(args.model, n_ctx=n_ctx, flash_attn=True, cache_type=ct)
        eng.evaluate(ctx, prefix)
        eng.save_seq(ctx, w(f"llama_{ct}.bin"), prefix)
        got = eng.evaluate(ctx, cont)
        size = os.path.getsize(w(f"llama_{ct}.bin"))
        m = compare(ref, got, cont)
        m.update(case=f"llama.cpp {ct} cache", label=f"llama.cpp {ct} KV cache (state file)", file_bytes=size,
                 bits_per_dim=8.0 * size / raw_elems)
        rows.append(m)
        # The adapter's writer: the engine's q8_0/q4_0 state read (dequantized, un-rotated) and
        # written back as the same type must restore the same cache.
        eng.run([conv, "-q", w(f"llama_{ct}.bin"), w(f"re_{ct}.bin"), "--to", "llama-seq"])
        again = compare(got, restored_logits(w(f"re_{ct}.bin"), ct), cont)
        check(again["kl_mean"] < 1e-4, f"{ct} state re-written by the adapter restores the engine's logits "
              f"(KL {again['kl_mean']:.2e}, identical: {again['bit_identical']})")
        # f16 state quantized by the adapter vs quantized by the engine itself.
        eng.run([conv, "-q", w("orig.bin"), w(f"to_{ct}.bin"), "--to", "llama-seq",
                 "--llama-type-k", ct, "--llama-type-v", ct])
        mine = restored_logits(w(f"to_{ct}.bin"), ct)
        m2 = compare(ref, mine, cont)
        m2.update(case=f"f16 state -> {ct} by mqkv", label=f"adapter-quantized {ct} (rotation + ggml reference quantizer)",
                  file_bytes=os.path.getsize(w(f"to_{ct}.bin")), bits_per_dim=8.0 * os.path.getsize(w(f"to_{ct}.bin")) / raw_elems)
        rows.append(m2)
        check(m2["kl_mean"] < 2 * m["kl_mean"] + 1e-4,
              f"adapter-quantized {ct} is as good as the engine's own {ct} (KL {m2['kl_mean']:.2e} vs {m['kl_mean']:.2e})")

    # Transposed V (no flash attention) in a session file: byte-identical round trip.
    ctx = eng.load(args.model, n_ctx=n_ctx, flash_attn=False)
    eng.evaluate(ctx, prefix)
    eng.save_session(ctx, w("vt.session"), prefix)
    del ctx
    eng.run([conv, "-q", w("vt.session"), w("vt.mqkv"), "--codec", "f16"])
    eng.run([conv, "-q", w("vt.mqkv"), w("vt2.session"), "--to", "llama-session"])
    check(filecmp.cmp(w("vt.session"), w("vt2.session"), shallow=False),
          "transposed-V session file -> mqkv -> session file is byte-identical")

    elapsed = time.time() - t_start
    hdr = f"{'case':52s} {'bits/dim':>8s} {'bytes':>10s} {'KL mean':>10s} {'KL max':>10s} {'top-1':>7s} {'ppl':>8s}"
    print(f"\nreference ppl (original f16 cache): {compare(ref, ref, cont)['ppl']:.4f}\n{hdr}")
    for r in rows:
        print(f"{r['case']:52s} {r['bits_per_dim']:8.3f} {r['file_bytes']:10d} {r['kl_mean']:10.3e} {r['kl_max']:10.3e} "
              f"{r['top1']:7.4f} {r['ppl']:8.4f}")
    print(f"elapsed {elapsed:.1f} s")

    if args.results:
        os.makedirs(args.results, exist_ok=True)
        with open(os.path.join(args.results, "results.csv"), "w", newline="") as f:
            cw = csv.writer(f)
            cw.writerow(["case", "bits_per_dim", "file_bytes", "kl_mean", "kl_max", "top1_agreement", "ppl", "bit_identical"])
            for r in rows:
                cw.writerow([r["case"], f"{r['bits_per_dim']:.4f}", r["file_bytes"], f"{r['kl_mean']:.6e}",
                             f"{r['kl_max']:.6e}", f"{r['top1']:.4f}", f"{r['ppl']:.4f}", r["bit_identical"]])
        cpu = ""
        try:
            cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        except Exception:
            cpu = platform.processor()
        with open(os.path.join(args.results, "RESULTS.md"), "w") as f:
            f.write("# End-to-end: llama.cpp KV cache -> mqkv -> llama.cpp\n\n")
            f.write(f"Command: `tests/e2e/run.sh` (runs `tests/e2e/roundtrip.py --prefix {args.prefix} --cont {args.cont}`)  \n")
            f.write(f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  \n")
            f.write(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}  \n")
            f.write(f"Engine: {eng.llama_cpp.__version__ if hasattr(eng.llama_cpp, '__version__') else '?'} llama-cpp-python (CPU build), "
                    f"model {os.path.basename(args.model)}, n_threads 2, flash attention on  \n")
            f.write(f"Text: {args.text}, prefix {args.prefix} tokens (BOS included) saved and restored, "
                    f"next {args.cont} tokens evaluated teacher-forced  \nRun time: {elapsed:.0f} s\n\n")
            f.write("KL = mean over the continuation positions of KL(original || restored) in nats over the full "
                    "vocabulary; top-1 = share of positions where both argmax tokens agree; ppl = perplexity of "
                    f"tokens 2..{args.cont} of the continuation under the restored context (original: "
                    f"{compare(ref, ref, cont)['ppl']:.4f}); bits/dim = file bytes x 8 / K+V elements "
                    f"({raw_elems:,} = 30 layers x 2 x {args.prefix} tokens x 192). mqkv files hold Q-free K/V plus "
                    "the footer; llama.cpp state files also hold cell metadata and tokens.\n\n")
            f.write("| case | bits/dim | file bytes | KL mean | KL max | top-1 | ppl | logits bit-identical |\n")
            f.write("|---|---:|---:|---:|---:|---:|---:|:-:|\n")
            for r in rows:
                f.write(f"| {r['case']} | {r['bits_per_dim']:.3f} | {r['file_bytes']:,} | {r['kl_mean']:.3e} | "
                        f"{r['kl_max']:.3e} | {r['top1']:.4f} | {r['ppl']:.4f} | {'yes' if r['bit_identical'] else 'no'} |\n")
            f.write("\nChecks:\n\n")
            f.write("".join(f"- {c}\n" for c in checks))
    if failures:
        print(f"\n{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

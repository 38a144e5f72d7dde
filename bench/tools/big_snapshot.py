#!/usr/bin/env python3
"""Snapshots larger than 4 GiB and than comfortable memory, end to end (issue 20's stress and
16 GiB benchmarks): a Llama-3-8B-shaped f16 cache (32 layers x K,V x TOKENS x 8 KV heads x 128)
written as safetensors, then converted and verified with the tools, each run timed with its peak
RSS (wait4), every input evicted from the page cache first (posix_fadvise DONTNEED after fsync).

    # stress: a 6 GiB snapshot, lossless both ways (mqkv blocks beyond the 4 GiB offset), verified
    bench/tools/big_snapshot.py --tokens 49152 --lossless
    # benchmark: 16 GiB (128k tokens) to the main 3-bit preset and back
    bench/tools/big_snapshot.py --tokens 131072

Run with the cache venv's python and PYTHONPATH=build/python (the input is made with numpy in a
child process; this process stays small so that the children's peak RSS is theirs). Needs about
3x the snapshot in free disk under --dir. Prints Markdown on stdout; files are removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PRESET = "affine_seven_level_3bit_g64_meta4"
LAYERS, HEADS, DIM = 32, 8, 128

MAKE = r"""
import json, os, struct, sys
import numpy as np
path, tokens = sys.argv[1], int(sys.argv[2])
L, H, D = 32, 8, 128
n = tokens * H * D * 2
hdr = {"__metadata__": {"mqkv.interop": "1", "mqkv.architecture": "llama", "mqkv.n_layer": str(L), "mqkv.n_head": "32",
                        "mqkv.n_head_kv": str(H), "mqkv.head_dim_k": str(D), "mqkv.head_dim_v": str(D)}}
off = 0
for l in range(L):
    for k in ("k", "v"):
        hdr[f"layers.{l}.{k}"] = {"dtype": "F16", "shape": [tokens, H, D], "data_offsets": [off, off + n]}
        off += n
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
rng = np.random.default_rng(1)
with open(path + ".tmp", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for l in range(L):
        for k in ("k", "v"):
            scale = rng.gamma(2.0, 0.5, size=(1, H, D)).astype(np.float32)
            for t0 in range(0, tokens, 8192):  # 16 MiB of f16 at a time
                t1 = min(tokens, t0 + 8192)
                f.write((rng.standard_normal((t1 - t0, H, D), dtype=np.float32) * scale).astype(np.float16).tobytes())
    f.flush()
    os.fsync(f.fileno())
os.rename(path + ".tmp", path)
"""


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(cmd: list[str], evict_first: str | None = None, capture: bool = False) -> tuple[float, int, str]:
    if evict_first:
        evict(evict_first)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = p.stdout.read().decode() if capture else ""
    err = p.stderr.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    t = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}: {err.strip()}")
    return t, ru.ru_maxrss * 1024, out


def same_tensors(a: str, b: str) -> bool:
    """Whether two safetensors files hold the same tensors with the same bytes (headers may differ:
    the tools write their model facts into __metadata__)."""
    def header(path):
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return 8 + n, json.loads(f.read(n))
    (sa, ha), (sb, hb) = header(a), header(b)
    names = sorted(k for k in ha if k != "__metadata__")
    if names != sorted(k for k in hb if k != "__metadata__"):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for k in names:
            if ha[k]["dtype"] != hb[k]["dtype"] or ha[k]["shape"] != hb[k]["shape"]:
                return False
            (a0, a1), (b0, _) = ha[k]["data_offsets"], hb[k]["data_offsets"]
            fa.seek(sa + a0)
            fb.seek(sb + b0)
            left = a1 - a0
            while left:
                n = min(left, 16 << 20)
                if fa.read(n) != fb.read(n):
                    return False
                left -= n
    return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/var/tmp"))
    ap.add_argument("--tools", default="build/tools")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--lossless", action="store_true", help="also lossless mqkv both ways, verified and compared byte for byte")
    args = ap.parse_args()
    tool = lambda name: os.path.join(args.tools, name)  # noqa: E731
    f16 = LAYERS * 2 * args.tokens * HEADS * DIM * 2
    d = os.path.join(args.dir, f"mqkv-big-{os.getpid()}")
    os.makedirs(d)
    src, lmq, lback, q, back = (os.path.join(d, n) for n in ("src.safetensors", "l.mqkv", "l.safetensors", "q.mqkv", "back.safetensors"))
    rows = []

    def add(what, cmd, evict_first, gb):
        t, rss, out = run(cmd, evict_first, capture=cmd[0].endswith("mqinfo"))
        rows.append((what, t, gb / t / 1e9 if gb else None, rss))
        return out

    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", MAKE, src, str(args.tokens)], check=True)
        t_make = time.perf_counter() - t0
        add("cat src.safetensors > /dev/null (cold)", ["cat", src], src, f16)
        add("cat src.safetensors > /dev/null (warm)", ["cat", src], None, f16)
        th = ["--threads", args.threads]
        if args.lossless:
            add("mqconvert src.safetensors l.mqkv (lossless f16)", [tool("mqconvert"), src, lmq, *th], src, f16)
            info = json.loads(add("mqinfo --json l.mqkv", [tool("mqinfo"), "--json", lmq], lmq, 0))
            add("mqverify l.mqkv (every block: checksum, SIMD decode, sampled rows vs scalar)", [tool("mqverify"), lmq, *th], lmq, f16)
            add("mqconvert l.mqkv l.safetensors", [tool("mqconvert"), lmq, lback, *th], lmq, f16)
            same = same_tensors(src, lback)
            os.remove(lback)
            os.remove(lmq)
        add(f"mqconvert src.safetensors q.mqkv --codec {PRESET}", [tool("mqconvert"), src, q, "--codec", PRESET, *th], src, f16)
        add("mqconvert q.mqkv back.safetensors (f16)", [tool("mqconvert"), q, back, *th], q, f16)
        add("mqverify q.mqkv", [tool("mqverify"), q, *th], q, f16)
        qbytes = os.path.getsize(q)
        print(f"{LAYERS} layers x K,V x {args.tokens} tokens x {HEADS} x {DIM}: {f16:,} bytes of f16 "
              f"({f16 / 2**30:.1f} GiB); 3-bit file {qbytes:,} bytes; --threads {args.threads}; {os.cpu_count()} cores; "
              f"files in {args.dir}; writing the input took {t_make:.0f} s; each input evicted from the page cache "
              f"before its command unless marked warm\n")
        if args.lossless:
            beyond = info["file_bytes"] - info["footer_bytes"] > 2**32
            print(f"Lossless round trip safetensors -> mqkv -> safetensors, every tensor byte-identical: {'yes' if same else 'NO'}; "
                  f"the lossless mqkv file is {info['file_bytes']:,} bytes, "
                  f"{'so its last blocks lie beyond the 4 GiB offset' if beyond else 'NOT past 4 GiB'}; "
                  f"mqverify checked every block's checksum and decode\n")
        print("| command | wall | GB/s of f16 | peak RSS |")
        print("|---|---:|---:|---:|")
        for what, t, gbs, rss in rows:
            print(f"| {what} | {t:.1f} s | {'' if gbs is None else f'{gbs:.2f}'} | {rss / 2**20:,.0f} MiB |")
    finally:
        for f in (src, lmq, lback, q, back):
            if os.path.exists(f):
                os.remove(f)
        os.rmdir(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Turns bench_mqkv's Google Benchmark JSON into bench/RESULTS.md (called by bench/run.sh)."""
import argparse
import datetime
import json
import platform
import subprocess


def load(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        name = b["name"].replace("/real_time", "")
        out[name] = b
    return data.get("context", {}), out


def gbps(b):
    if b is None or b.get("error_occurred"):
        return None
    v = b.get("bytes_per_second")
    return v / 1e9 if v else None


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt(v, unit=""):
    return "n/a" if v is None else f"{v:.2f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", required=True)
    ap.add_argument("--threads", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--load", default="?")
    a = ap.parse_args()
    ctx, s = load(a.single)
    _, t = load(a.threads)

    isas = []  # best first, as registered (decode, else encode names when only those ran)
    for name in s:
        if name.startswith("decode/"):
            isa = name.split("/")[3]
            if isa not in isas:
                isas.append(isa)
    if not isas:
        for name in s:
            if name.startswith("encode/") and name.split("/")[2] not in isas:
                isas.append(name.split("/")[2])
    best = isas[0] if isas else "scalar"
    mem = {"f16": gbps(s.get("memcpy/f16_out")), "f32": gbps(s.get("memcpy/f32_out"))}
    mem_enc = gbps(s.get("memcpy/encode_in"))  # 4 MiB: in cache
    mem_enc_big = gbps(s.get("memcpy/encode_big_in"))  # 64 MiB: past the LLC

    def dec(cfg, dt, isa=best):
        return gbps(s.get(f"decode/{cfg}/{dt}/{isa}"))

    def ratio(x, y):
        return None if x is None or y is None or y == 0 else x / y

    rows = []  # (goal, measured, ratio, target, met)

    def goal(desc, value, base, target):
        r = ratio(value, base)
        met = "n/a" if r is None else ("met" if r >= target else "NOT met")
        rows.append((desc, fmt(value, " GB/s"), fmt(base, " GB/s"), "n/a" if r is None else f"{100 * r:.0f}%",
                     f">= {100 * target:.0f}%", met))

    for bits in (2, 3, 4):
        for dt in ("f16", "f32"):
            goal(f"affine {bits}-bit g64 -> {dt} ({best}) vs memcpy of the output", dec(f"affine_b{bits}_g64", dt), mem[dt], 0.80)
    for cfg in ("hadamard_b2_g64_meta8", "hadamard_b2_g32", "hadamard_b3_g64", "hadamard_b4_g64"):
        for dt in ("f16", "f32"):
            goal(f"{cfg} -> {dt} ({best}) vs memcpy", dec(cfg, dt), mem[dt], 0.50)
    for cfg in ("affine_b2_g64", "affine_b3_g64", "affine_b4_g64", "hadamard_b2_g64_meta8"):
        goal(f"encode {cfg} ({best}, 64 MiB of fp32 input, past the LLC) vs memcpy of the input",
             gbps(s.get(f"encode_big/{cfg}/{best}")), mem_enc_big, 0.25)
    q4 = gbps(s.get("ggml/q4_0/f32"))
    goal("affine 4-bit g64 -> f32 vs ggml q4_0 to_float (per output byte)", dec("affine_b4_g64", "f32"), q4, 1.0)

    opens = sorted(((int(k.split("/")[1]), v) for k, v in s.items() if k.startswith("open/")), key=lambda x: x[0])
    one = s.get("layer/one")
    alls = s.get("layer/all")

    L = []
    L.append("# mqkv CPU benchmark results\n")
    L.append("Written by `bench/run.sh` (bench/bench_mqkv.cpp, bench/report.py). Regenerate rather than edit.\n")
    L.append(f"- Machine: {cpu_model()}, {ctx.get('num_cpus', '?')} CPUs visible, "
             f"{ctx.get('mhz_per_cpu', '?')} MHz; caches: " +
             ", ".join(f"L{c['level']} {c['type']} {c['size'] // 1024} KiB" for c in ctx.get("caches", [])))
    L.append(f"- SIMD ISAs available (best first): {', '.join(isas)}; goals use `{best}`")
    L.append(f"- Command: `{a.command}`")
    L.append(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    L.append(f"- Load average before the run: {a.load} (shared machine: single-core rates use the thread's CPU time, "
             "Google Benchmark's default, so that waiting for a core does not count; memcpy is measured the same way "
             "in the same run)")
    L.append("- Decode: one block of 16384 tokens x 8 heads x 128 dims (16 Mi values: 32 MiB of fp16 / 64 MiB of "
             "fp32 output, past the last-level cache, like a real cache), GB/s of output bytes. Encode: GB/s of fp32 input "
             "bytes, at 1024 x 8 x 128 values (4 MiB, cache-resident) and at the decode block's 16384 x 8 x 128 "
             "(64 MiB, past the LLC; the goals use this one, the regime of the decode goals).\n")

    L.append("## Goals\n")
    L.append("| goal | measured | baseline | ratio | target | result |")
    L.append("|---|---|---|---|---|---|")
    for r in rows:
        L.append("| " + " | ".join(r) + " |")
    if opens:
        first, last = opens[0][1]["cpu_time"], opens[-1][1]["cpu_time"]
        unit = opens[0][1].get("time_unit", "ns")
        r = last / first if first else None
        L.append(f"| open+index {opens[-1][0]} MiB vs {opens[0][0]} MiB (flat: only the footer is read) | "
                 f"{last:.0f} {unit} | {first:.0f} {unit} | {fmt(r, 'x')} | <= 2x | "
                 f"{'met' if r is not None and r <= 2 else 'NOT met'} |")
    big = [b for mib, b in opens if mib >= 64]
    if len(big) >= 2:
        r = big[-1]["cpu_time"] / big[0]["cpu_time"]
        L.append(f"| open+index {opens[-1][0]} MiB vs 64 MiB (the 1 MiB file's 64 block headers share pages; 64 MiB on, each is its own page) | "
                 f"{big[-1]['cpu_time']:.0f} {big[-1]['time_unit']} | {big[0]['cpu_time']:.0f} {big[0]['time_unit']} | "
                 f"{r:.2f}x | <= 2x | {'met' if r <= 2 else 'NOT met'} |")
    if one and alls:
        per_layer_all = alls["cpu_time"] / 32
        r = one["cpu_time"] / per_layer_all
        L.append(f"| decode one layer vs whole file / 32 layers | {one['cpu_time']:.0f} {one['time_unit']} | "
                 f"{per_layer_all:.0f} {alls['time_unit']} | {r:.2f}x | <= 1.25x | {'met' if r <= 1.25 else 'NOT met'} |")
    L.append("")

    L.append("## Decode, every codec, output type and ISA (GB/s of output; % of memcpy of the same bytes)\n")
    L.append(f"memcpy: f16-sized {fmt(mem['f16'], ' GB/s')}, f32-sized {fmt(mem['f32'], ' GB/s')}\n")
    L.append("| codec | out | " + " | ".join(isas) + " |")
    L.append("|---|---|" + "---|" * len(isas))
    cfgs = []
    for name in s:
        if name.startswith("decode/"):
            c = name.split("/")[1]
            if c not in cfgs:
                cfgs.append(c)
    for c in cfgs:
        for dt in ("f16", "f32"):
            cells = []
            for isa in isas:
                v = dec(c, dt, isa)
                r = ratio(v, mem[dt])
                cells.append("n/a" if v is None else f"{v:.2f} ({100 * r:.0f}%)")
            L.append(f"| {c} | {dt} | " + " | ".join(cells) + " |")
    L.append("")

    small_mem = gbps(s.get("memcpy_small/f16_out"))
    smalls = [(k, gbps(v)) for k, v in s.items() if k.startswith("decode_small/")]
    if smalls:
        L.append("## In-cache regime (256 tokens: 512 KiB of fp16 output)\n")
        L.append(f"memcpy of 512 KiB: {fmt(small_mem, ' GB/s')} (source and destination cache-resident)\n")
        L.append("| decode | GB/s | % of memcpy |")
        L.append("|---|---|---|")
        for k, v in smalls:
            r = ratio(v, small_mem)
            L.append(f"| {k.split('/', 1)[1]} | {fmt(v)} | {'n/a' if r is None else f'{100 * r:.0f}%'} |")
        L.append("")

    L.append("## Encode, every codec and ISA (GB/s of fp32 input; % of memcpy of the same bytes)\n")
    L.append(f"memcpy: 4 MiB (in cache) {fmt(mem_enc, ' GB/s')}, 64 MiB (past the LLC) {fmt(mem_enc_big, ' GB/s')}. "
             "`scalar` is the reference encoder; the SIMD encoders produce its bytes exactly. Codebook has the "
             "reference encoder only.\n")
    L.append("| codec | " + " | ".join(f"4 MiB {i}" for i in isas) + " | " + " | ".join(f"64 MiB {i}" for i in isas) + " |")
    L.append("|---|" + "---|" * (2 * len(isas)))
    enc_cfgs = []
    for name in s:
        if name.startswith("encode/") or name.startswith("encode_big/"):
            c = name.split("/")[1]
            if c not in enc_cfgs:
                enc_cfgs.append(c)

    def enc_cell(prefix, c, isa, base):
        b = s.get(f"{prefix}/{c}/{isa}")
        if b is None:
            return "-"
        v = gbps(b)
        r = ratio(v, base)
        return "n/a" if v is None else f"{v:.2f} ({100 * r:.0f}%)" if r is not None else f"{v:.2f}"

    for c in enc_cfgs:
        cells = [enc_cell("encode", c, i, mem_enc) for i in isas] + [enc_cell("encode_big", c, i, mem_enc_big) for i in isas]
        L.append(f"| {c} | " + " | ".join(cells) + " |")
    L.append("")

    L.append("## Peer: ggml to_float on the same number of values (GB/s of fp32 output)\n")
    for k in ("ggml/q4_0/f32", "ggml/q8_0/f32"):
        b = s.get(k)
        if b is None:
            L.append(f"- {k}: not run")
        elif b.get("error_occurred"):
            L.append(f"- {k}: {b.get('error_message', 'skipped')}")
        else:
            L.append(f"- {k}: {fmt(gbps(b), ' GB/s')} ({b.get('label', '')})")
    L.append(f"- mqkv affine 4-bit g64 -> f32 ({best}): {fmt(dec('affine_b4_g64', 'f32'), ' GB/s')}; "
             f"affine 8-bit g64 -> f32: {fmt(dec('affine_b8_g64', 'f32'), ' GB/s')} (informative: q8_0 is not a goal)")
    L.append("")

    L.append("## Open + index as the file grows (64 tensors, raw fp16 rows)\n")
    L.append("| file MiB | time |")
    L.append("|---|---|")
    for mib, b in opens:
        L.append(f"| {mib} | {b['cpu_time']:.0f} {b['time_unit']} |")
    L.append("")
    if one and alls:
        L.append("## One layer vs the whole file (32 layers x K,V, 1024 tokens, affine_seven_level_3bit_g64_meta4 -> f16)\n")
        L.append(f"- one layer (K and V): {one['cpu_time']:.0f} {one['time_unit']}")
        L.append(f"- all 32 layers: {alls['cpu_time']:.0f} {alls['time_unit']} ({alls['cpu_time'] / 32:.0f} per layer)\n")

    L.append("## Thread scaling (affine 2-bit g64 -> f16, rows split over threads, wall time)\n")
    L.append("Wall time, so it includes waiting for cores: on a machine shared with other jobs (see the load "
             "average above) the one-thread figure here is below the CPU-time figure in the tables above.\n")
    L.append("| threads | codec rows split (2-bit) GB/s | speed-up | Snapshot::Decode(threads) (3-bit main preset) GB/s | speed-up |")
    L.append("|---|---|---|---|---|")
    split = {k.split("/")[1]: b for k, b in t.items() if k.startswith("threads/") and k.split("/")[1].isdigit()}
    snap = {k.split("/")[2]: b for k, b in t.items() if k.startswith("threads/decode/")}
    base = base_s = None
    for n in sorted(set(split) | set(snap), key=int):
        g = gbps(split[n]) if n in split else None
        h = gbps(snap[n]) if n in snap else None
        base = base or g
        base_s = base_s or h
        L.append(f"| {n} | {fmt(g)} | {fmt(ratio(g, base), 'x')} | {fmt(h)} | {fmt(ratio(h, base_s), 'x')} |")
    L.append("")
    L.append("## Analysis of the tight and missed goals (profiled with `perf record -e cpu-clock`; hardware counters are not exposed in this VM)\n")
    L.append("- **Hadamard -> f16.** The closest goal. The decode runs at the same rate in values per second for f16 "
             "and f32 output (compare the two rows): it is compute-bound (~1.8-2 G values/s, ~11 cycles per 8 values), "
             "so halving the output bytes halves the GB/s, and the fp16 conversion is already fused into the row kernel "
             "(`RowHadamard` stores vcvtps2ph results; no fp32 round trip). Per 128 values the AVX2 kernel issues 96 "
             "vaddps, 80 vsubps, 48 blends and 32 shuffles: the in-register stages h=1,2,4 compute a+b and a-b and "
             "keep half of each. With the machine quiet it lands at 51-58% of memcpy, but the margin is within run-to-"
             "run noise (one quiet run had hadamard_b2_g32 at 43%; with other jobs on the sibling hardware thread it "
             "measured 44-47%). A lane-transposed variant (each lane a different rotation block, one add or sub per "
             "stage) was bit-identical but not faster to f16 and 1.8x slower to f32 (scattered stores), so it was not "
             "kept. The bit-identical contract fixes the stage order and forbids FMA; the remaining levers are "
             "width (the AVX-512 kernel does the same work in half the uops, but this VM does not expose AVX-512) and "
             "addsub-based in-vector stages (not measured).")
    L.append("- **Encode.** The SIMD encoder (lib/src/codec/simd_encode_kernels.h, one template per ISA like the "
             "decoder; `scalar` in the tables is the reference encoder, whose bytes it reproduces exactly) takes the "
             "input in chunks of ~128 KiB: (a) group min/max with vector min/max (a finite check folded in), (b) the "
             "metadata rule and its fp16 storage (F16C), (c) codes with a true division and round-half-even, packed "
             "four vectors at a time, while the next chunk is prefetched; so with fp16 metadata the input is read "
             "from memory once. Meta-coded metadata (meta 4/8) shares one range per column over all group rows, so "
             "every group's range is needed before any code: those specs read the input twice, and with Hadamard "
             "rotate it twice (the bit-exact stage order and no FMA leave the rotation at ~2 vector ops per value), "
             "which is why hadamard_b2_g64_meta8 is the slowest encode goal. In cache the remaining cost is "
             "compute: the division (kept for bit-identity with the reference), rounding and packing; codebook "
             "encoding is still the scalar reference only.")
    L.append("- **Open + index.** Open reads only the file header, the tail and the footer (spec/FORMAT.md section 8, "
             "steps 1-16 and 20); each block's 128-byte header is checked on first access to that block, before its "
             "checksum (steps 17-19). Before this change open checked every block header and touched one page per "
             "block (1 GiB = 5.3-7.2x the 1 MiB time); now the time depends on the footer's size, not the file's.")
    L.append("- **SSE2 -> f16/bf16.** SSE2 has no F16C: the conversion is an exact integer/float emulation "
             "(round-to-nearest-even, NaN payloads kept), several times slower than vcvtps2ph. SSE2 is the fallback "
             "for x86-64 CPUs without AVX2; every AVX2 CPU has F16C.\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Remote-read benchmark (issue 16): requests and bytes that mqinfo, one layer and a 10% token
# range fetch from a >= 256 MiB snapshot on SeaweedFS (S3 API on loopback), and whole-object
# throughput through the library against a plain curl GET of the same object, alternating runs.
# Writes bench/results/remote.md. Usage: bench/remote/run.sh [MiB, default 256]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
. scripts/lib/common.sh
. tests/remote/servers.sh
bash scripts/setup-store.sh
MIB=${1:-256}
B=${MQKV_BUILD_DIR:-build}
T=$(mktemp -d)
trap 'mqkv_servers_stop; rm -rf "$T"' EXIT
mqkv_store_start "$T"
OUT=bench/results/remote.md
"$B/bench/mqkv_remote" make "$T/big.mqkv" --mib "$MIB"
"$B/bench/mqkv_remote" make "$T/small-blocks.mqkv" --mib "$MIB" --block-tokens 256
SIZE=$(stat -c %s "$T/big.mqkv")
t0=$(date +%s.%N)
"$B/tools/mqconvert" -q "$T/big.mqkv" s3://mqkv/big.mqkv
t1=$(date +%s.%N)
"$B/tools/mqconvert" -q "$T/small-blocks.mqkv" s3://mqkv/small-blocks.mqkv --max-block-tokens 256
upload=$(echo "$SIZE $t0 $t1" | awk '{printf "%.0f MB/s (%.2f s, re-encoding included)", $1/1e6/($3-$2), $3-$2}')
{
  echo "# Remote reads: SeaweedFS on loopback"
  echo
  echo "Command: \`bench/remote/run.sh $MIB\` ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "SeaweedFS $("$MQKV_VENV/bin/weed" version 2>/dev/null | head -1 | awk '{print $3}'), libcurl $(curl --version | head -1 | awk '{print $2}'));"
  echo "the store, the client and curl share the machine's cores (loopback)."
  echo "Snapshot: mqkv_remote make --mib $MIB: 30 layers x K,V, 8 KV heads x 128 dims, f16, $SIZE bytes."
  echo "Upload through \`mqconvert IN s3://...\` (multipart, 8 MiB parts): $upload."
  echo
  echo "## One block per tensor (60 blocks)"
  echo
  "$B/bench/mqkv_remote" measure s3://mqkv/big.mqkv
  echo
  echo "## 256-token blocks"
  echo
  "$B/bench/mqkv_remote" measure s3://mqkv/small-blocks.mqkv
  echo
  echo "## mqinfo --stats"
  echo
  echo '```'
  "$B/tools/mqinfo" --stats s3://mqkv/big.mqkv 2>&1 >/dev/null
  "$B/tools/mqinfo" --stats s3://mqkv/small-blocks.mqkv 2>&1 >/dev/null
  echo '```'
  echo
  echo "## Whole-object throughput, library vs curl (alternating, 3 runs each)"
  echo
  echo "| run | curl: one GET -> /dev/null | curl: the library's 60 tensor-sized ranged GETs, in sequence | library: verify + decode every block to f16 | library / one GET | library / same ranges |"
  echo "|---|---|---|---|---|---|"
  chunk=$((SIZE / 60))
  for i in 1 2 3; do
    c=$(mqkv_s3_curl -o /dev/null -w '%{speed_download}' "$AWS_ENDPOINT_URL/mqkv/big.mqkv" | awk '{printf "%.0f", $1/1e6}')
    r0=$(date +%s.%N)
    off=0
    while [ "$off" -lt "$SIZE" ]; do
      mqkv_s3_curl -o /dev/null -r "$off-$((off + chunk - 1))" "$AWS_ENDPOINT_URL/mqkv/big.mqkv"
      off=$((off + chunk))
    done
    r=$(echo "$SIZE $r0 $(date +%s.%N)" | awk '{printf "%.0f", $1/1e6/($3-$2)}')
    l=$("$B/bench/mqkv_remote" measure s3://mqkv/big.mqkv | sed -n 's/.* = \([0-9]*\) MB\/s.*/\1/p')
    echo "| $i | $c MB/s | $r MB/s | $l MB/s | $(awk -v a="$l" -v b="$c" 'BEGIN{printf "%.0f%%", 100*a/b}') | $(awk -v a="$l" -v b="$r" 'BEGIN{printf "%.0f%%", 100*a/b}') |"
  done
  cat <<'TXT'

## Reading the numbers

- Goal "one layer of 30 fetches under 5% of the file": met, 3.36% (the layer's two tensors, 1/30
  of the data, plus the 64 KiB suffix of the open), in 4 requests (open, the file header, one
  merged GET per tensor).
- A 10% token range fetches the blocks holding it: with one block per tensor that is the whole
  object (the block is the unit of fetching and checking); with 256-token blocks, 23%
  (218 tokens span two blocks per tensor). Write snapshots meant for partial reads with
  `--max-block-tokens`.
- mqinfo reads every block header: 61 requests for 60 blocks; for 600 blocks of 512 KiB, 541
  (headers closer than 64 KiB share a request; the others go out 8 at a time in parallel).
- Whole-object throughput: goal "within 80% of curl" missed against one whole-object GET. The
  cause is the store's ranged reads, not the client: SeaweedFS serves the same tensor-sized
  ranged GETs to curl, one after another, at a fraction of its whole-object rate, and the library
  (which overlaps each next range with checking and decoding the current one, on a second
  connection) beats curl doing those same requests. Reaching the goal needs fewer, larger requests
  for a whole-object pass (read-ahead windows of 32 MiB or more that the cache can join across
  tensor boundaries), not yet done. The store, the client and curl share this machine's 2 cores.
TXT
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"

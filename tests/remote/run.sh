#!/usr/bin/env bash
# Object-storage tests against real servers on loopback (issue 16): SeaweedFS's S3 API and nginx,
# started here on free 127.0.0.1 ports and stopped by their pids. Every tool on s3:// and http://:
# uploads byte-identical to local files (single PUT and multipart), mqinfo/mqverify/--tokens from
# URLs, non-mqkv inputs from URLs, bad credentials, and an upload killed by SIGKILL (no object
# appears; an object already under the key is untouched).
# Uses the Release build in ${MQKV_BUILD_DIR:-build} (tools and bench/mqkv_remote).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
. scripts/lib/common.sh
. tests/remote/servers.sh
bash scripts/setup-store.sh
B=${MQKV_BUILD_DIR:-build}
T=$(mktemp -d)
trap 'mqkv_servers_stop; rm -rf "$T"' EXIT
fail=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fail=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

mqkv_store_start "$T"
mqkv_nginx_start "$T"
SAMPLE=data/sample/smollm2-pride-and-prejudice.mqkv
S3=s3://mqkv

echo "== uploads are byte-identical to local output"
"$B/tools/mqconvert" -q "$SAMPLE" "$T/local.mqkv"
"$B/tools/mqconvert" -q "$SAMPLE" "$S3/sample.mqkv"
mqkv_s3_curl -o "$T/got.mqkv" "$AWS_ENDPOINT_URL/mqkv/sample.mqkv"
check "single-PUT upload (3.3 MB) equals the local file" cmp -s "$T/local.mqkv" "$T/got.mqkv"
"$B/bench/mqkv_remote" make "$T/big.mqkv" --mib 20 --block-tokens 64 2>/dev/null
"$B/tools/mqconvert" -q "$T/big.mqkv" "$T/big-local.mqkv"
"$B/tools/mqconvert" -q "$T/big.mqkv" "$S3/dir/big.mqkv"
mqkv_s3_curl -o "$T/got-big.mqkv" "$AWS_ENDPOINT_URL/mqkv/dir/big.mqkv"
check "multipart upload (20 MiB, 3 parts) equals the local file" cmp -s "$T/big-local.mqkv" "$T/got-big.mqkv"
mqkv_s3_curl "$AWS_ENDPOINT_URL/mqkv?uploads=" >"$T/uploads.xml"
check "no multipart upload left open" bash -c "grep -q ListMultipartUploadsResult '$T/uploads.xml' && ! grep -q '<UploadId>' '$T/uploads.xml'"

echo "== reading from s3://"
"$B/tools/mqinfo" --no-verify "$T/local.mqkv" | tail -n +2 >"$T/info-local.txt"
"$B/tools/mqinfo" --stats "$S3/sample.mqkv" 2>"$T/stats.txt" | tail -n +2 >"$T/info-s3.txt"
check "mqinfo s3:// prints what mqinfo prints for the local file" cmp -s "$T/info-local.txt" "$T/info-s3.txt"
cat "$T/stats.txt"
check "mqinfo --stats reports requests and bytes" grep -q "requests (0 retried), [0-9]* bytes fetched of" "$T/stats.txt"
check "mqverify s3:// passes" bash -c "'$B/tools/mqverify' '$S3/sample.mqkv' >/dev/null"
"$B/tools/mqinfo" --stats "$S3/dir/big.mqkv" >/dev/null 2>"$T/stats-big.txt"
cat "$T/stats-big.txt"
"$B/tools/mqconvert" -q "$S3/dir/big.mqkv" "$T/slice-s3.safetensors" --tokens 100:164
"$B/tools/mqconvert" -q "$T/big.mqkv" "$T/slice-local.safetensors" --tokens 100:164
check "--tokens from s3:// equals --tokens from the local file" cmp -s "$T/slice-s3.safetensors" "$T/slice-local.safetensors"
"$B/tools/mqconvert" -q "$T/slice-local.safetensors" "$S3/slice.safetensors"
"$B/tools/mqconvert" -q "$S3/slice.safetensors" "$T/from-s3-st.mqkv"
"$B/tools/mqconvert" -q "$T/slice-local.safetensors" "$T/from-local-st.mqkv"
check "a safetensors input read from s3:// converts as the local file does" cmp -s "$T/from-s3-st.mqkv" "$T/from-local-st.mqkv"

echo "== reading from http:// (nginx)"
cp "$T/local.mqkv" "$T/www/sample.mqkv"
cp "$T/slice-local.safetensors" "$T/www/slice.safetensors"
"$B/tools/mqinfo" "$MQKV_HTTP_URL/sample.mqkv" | tail -n +2 >"$T/info-http.txt"
check "mqinfo http:// prints what mqinfo prints for the local file" cmp -s "$T/info-local.txt" "$T/info-http.txt"
check "mqverify http:// passes" bash -c "'$B/tools/mqverify' '$MQKV_HTTP_URL/sample.mqkv' >/dev/null"
"$B/tools/mqconvert" -q "$MQKV_HTTP_URL/slice.safetensors" "$T/from-http-st.mqkv"
check "a safetensors input read over http:// converts as the local file does" cmp -s "$T/from-http-st.mqkv" "$T/from-local-st.mqkv"
set +e
"$B/tools/mqconvert" -q "$SAMPLE" "$MQKV_HTTP_URL/out.mqkv" 2>"$T/err.txt"; rc=$?
set -e
check "writing to http:// is refused (exit 5, says to use s3://)" bash -c "[ $rc != 0 ] && grep -q 'use s3://' '$T/err.txt'"
set +e
"$B/tools/mqinfo" "$MQKV_HTTP_URL/missing.mqkv" 2>"$T/err.txt"; rc=$?
set -e
check "a missing http object: exit 5, names the URL and HTTP 404" \
  bash -c "[ $rc = 5 ] && grep -q '$MQKV_HTTP_URL/missing.mqkv: open: no such object (HTTP 404)' '$T/err.txt'"

echo "== bad credentials"
set +e
AWS_SECRET_ACCESS_KEY=not-the-secret "$B/tools/mqinfo" "$S3/sample.mqkv" >/dev/null 2>"$T/err.txt"; rc=$?
AWS_SECRET_ACCESS_KEY=not-the-secret "$B/tools/mqconvert" -q "$SAMPLE" "$S3/denied.mqkv" 2>>"$T/err.txt"; rc2=$?
set -e
cat "$T/err.txt"
check "a wrong secret: exit 5 on read and on write, 'access denied' named, no secret printed" \
  bash -c "[ $rc = 5 ] && [ $rc2 = 5 ] && grep -q 'access denied (HTTP 403)' '$T/err.txt' && ! grep -q 'not-the-secret\|mqkvtestsecret' '$T/err.txt'"

echo "== an upload killed by SIGKILL leaves no object, and never a partial one"
"$B/bench/mqkv_remote" make "$T/huge.mqkv" --mib 96 2>/dev/null
killed=0
for key in fresh.mqkv sample.mqkv; do
  "$B/tools/mqconvert" -q "$T/huge.mqkv" "$S3/$key" &
  pid=$!
  # kill once a multipart upload is in flight (its first part sent)
  for _ in $(seq 1 400); do
    mqkv_s3_curl "$AWS_ENDPOINT_URL/mqkv?uploads=" | grep -q "<Key>$key</Key>" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
  done
  if kill -9 $pid 2>/dev/null; then killed=$((killed + 1)); fi
  wait $pid 2>/dev/null || true
done
check "both uploads were killed mid-way" [ "$killed" = 2 ]
code=$(mqkv_s3_curl -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/mqkv/fresh.mqkv")
check "no object under a new key after the kill (HTTP $code)" [ "$code" = 404 ]
mqkv_s3_curl -o "$T/after-kill.mqkv" "$AWS_ENDPOINT_URL/mqkv/sample.mqkv"
check "the object already under the key is untouched" cmp -s "$T/local.mqkv" "$T/after-kill.mqkv"

pids="$MQKV_WEED_PID $MQKV_NGINX_PID"
mqkv_servers_stop
for p in $pids; do check "server pid $p stopped" bash -c "! kill -0 $p 2>/dev/null"; done
[ "$fail" = 0 ] && echo "object storage: all checks passed"
exit $fail

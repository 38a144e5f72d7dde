#!/usr/bin/env bash
# cmake --install BUILD --prefix P, then configure, build and run a consumer with find_package(mqkv).
set -euo pipefail
build=$1; src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -x "$tmp/prefix/bin/mqinfo" && test -x "$tmp/prefix/bin/mqconvert" && test -x "$tmp/prefix/bin/mqverify"
# xsimd is a build-time dependency only (no public header includes it): the package does not ask for it.
[ -n "$(find "$tmp/prefix" -name mqkvConfig.cmake)" ] || { echo "no installed mqkvConfig.cmake under $tmp/prefix" >&2; exit 1; }
if grep -rqiE "xsimd|xtl" --include='*.cmake' --include='*.h' "$tmp/prefix"; then
  echo "the installed package still names xsimd/xtl:" >&2; grep -rliE "xsimd|xtl" --include='*.cmake' --include='*.h' "$tmp/prefix" >&2; exit 1
fi
cmake -S "$src/tests/install" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/consumer" "$src/spec/vectors/container/raw_f16.mqkv" | grep -q "4 tensors"
echo "install + find_package(mqkv) consumer: ok"

#!/usr/bin/env bash
# Guards the set-up contract that broke every first run once (issue 13): a set-up script prints
# nothing on stdout, and no script captures a set-up script's output as data.
#   1. every scripts/setup-*.sh redirects stdout to stderr (`exec 1>&2`) before its first command
#      other than `set`, so no tool it runs (pip, apt, cmake) can write to its stdout;
#   2. no shell script or Python file in the repository runs a setup-*.sh inside $(...) or `...`;
#   3. scripts/setup-deps.sh, run for real, writes zero bytes to stdout;
#   4. every stage script that scripts/test.sh runs exists (a missing one fails the stage, never skips).
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
fail=0
err() { echo "check_scripts: $*" >&2; fail=1; }

for f in scripts/setup-*.sh; do
  first=$(grep -v -E '^[[:space:]]*(#|$|set )' "$f" | head -n1)
  [ "$first" = "exec 1>&2" ] || [[ "$first" == "exec 1>&2 "* ]] \
    || err "$f: first command must be 'exec 1>&2' (stdout carries nothing), found: $first"
done

while IFS= read -r hit; do
  err "captures a set-up script's output (use the fixed cache layout of scripts/lib/common.sh): $hit"
done < <(git ls-files '*.sh' '*.py' '.ci/*' | xargs grep -n -E '(\$\(|`)[^)`]*setup-[a-z]+\.sh' 2>/dev/null \
         | grep -v '^tests/scripts/check_scripts.sh:' || true)

out=$(bash scripts/setup-deps.sh 2>/dev/null | wc -c)
[ "$out" = 0 ] || err "scripts/setup-deps.sh wrote $out bytes to stdout"

for s in scripts/build.sh scripts/fuzz.sh tests/e2e/run.sh tests/remote/run.sh python/tests/run.sh; do
  grep -q "$s" scripts/test.sh || err "scripts/test.sh no longer runs $s (update this check)"
  [ -f "$s" ] || err "$s (a stage of scripts/test.sh) is missing"
done

[ "$fail" = 0 ] && echo "check_scripts: set-up scripts print nothing on stdout; nothing captures them"
exit $fail

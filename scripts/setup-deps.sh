#!/usr/bin/env bash
# Installs the Debian packages mqkv builds with (idempotent; quick when all are present).
set -euo pipefail
pkgs=(cmake g++ make pkg-config flatbuffers-compiler libflatbuffers-dev libzstd-dev libxsimd-dev xtl-dev
      libcli11-dev libgtest-dev libxxhash-dev libbenchmark-dev zlib1g-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

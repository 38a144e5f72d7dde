#!/usr/bin/env bash
# Installs the Debian packages mqkv builds with (idempotent; quick when all are present).
# Prints nothing on stdout.
set -euo pipefail
exec 1>&2
. "$(dirname "$0")/lib/common.sh"
mqkv_apt_install cmake g++ make pkg-config flatbuffers-compiler libflatbuffers-dev libzstd-dev libxsimd-dev \
  xtl-dev libcli11-dev libgtest-dev libxxhash-dev libbenchmark-dev zlib1g-dev locales \
  libcurl4-openssl-dev libssl-dev libhtscodecs-dev ccache

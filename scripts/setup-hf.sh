#!/usr/bin/env bash
# Sets up Hugging Face transformers for mqkv.hf and the cross-engine tests, in the cache's venv
# ($MQKV_CACHE/venv, shared with llama-cpp-python so that one process runs both engines): pinned
# torch (PyPI's default x86_64 wheel: the CUDA build, ~3 GB with its nvidia-* dependencies; it
# runs on a CPU-only machine), transformers, and gguf + accelerate (transformers needs both to load the
# SmolLM2 GGUF).
# The wheels are kept in $MQKV_CACHE/downloads/hf, so a new venv installs without the network.
#
# Prints NOTHING on stdout (progress goes to stderr). Idempotent: a second run only checks a stamp.
set -euo pipefail
exec 1>&2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/common.sh
. "$ROOT/scripts/lib/common.sh"

TORCH_VERSION=2.15.0
TRANSFORMERS_VERSION=5.24.0   # 5.25.0 needs kernels>=0.19.1, which the registry does not have
GGUF_VERSION=0.19.0
ACCELERATE_VERSION=1.16.0
NUMPY_VERSION=2.4.6           # the engine's pin (scripts/setup-engine.sh)
PINS=("torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" "gguf==$GGUF_VERSION"
      "accelerate==$ACCELERATE_VERSION" "numpy==$NUMPY_VERSION")
STAMP="$MQKV_VENV/.mqkv-hf-torch-$TORCH_VERSION-transformers-$TRANSFORMERS_VERSION-gguf-$GGUF_VERSION-accelerate-$ACCELERATE_VERSION"
WHEELS="$MQKV_CACHE/downloads/hf"

mqkv_ensure_venv
if [[ ! -f "$STAMP" ]]; then
  mkdir -p "$WHEELS"
  echo "[setup-hf] fetching ${PINS[*]} (and dependencies) into $WHEELS" >&2
  "$MQKV_PY" -m pip download --quiet --dest "$WHEELS" "${PINS[@]}"
  echo "[setup-hf] installing ${PINS[*]} into $MQKV_VENV" >&2
  "$MQKV_PY" -m pip install --quiet --no-index --find-links "$WHEELS" "${PINS[@]}"
  "$MQKV_PY" -c 'import torch, transformers, gguf, accelerate' \
    || { echo "[setup-hf] torch/transformers/gguf/accelerate installed but do not import" >&2; exit 1; }
  touch "$STAMP"
fi

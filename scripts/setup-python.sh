#!/usr/bin/env bash
# Sets up what building and testing the Python package needs, in the cache's venv
# ($MQKV_CACHE/venv, shared with the engine): the pinned nanobind and scikit-build-core (the build
# backend of pyproject.toml), pytest and numpy, and the Python headers (Debian python3-dev when the
# venv's Python has none).
#
# Prints NOTHING on stdout (progress goes to stderr). Idempotent: a second run only checks a stamp.
# Pins: change them here and in pyproject.toml together.
set -euo pipefail
exec 1>&2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/common.sh
. "$ROOT/scripts/lib/common.sh"

NANOBIND_VERSION=3.1.0
SCIKIT_BUILD_CORE_VERSION=1.1.2
PYTEST_VERSION=$MQKV_PYTEST_VERSION   # scripts/lib/common.sh
NUMPY_VERSION=2.4.6   # the engine's pin (scripts/setup-engine.sh)
STAMP="$MQKV_VENV/.mqkv-python-nanobind-$NANOBIND_VERSION-skbuild-$SCIKIT_BUILD_CORE_VERSION-pytest-$PYTEST_VERSION"

mqkv_ensure_venv
if ! "$MQKV_PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  mqkv_apt_install python3-dev
fi
if [[ ! -f "$STAMP" ]]; then
  echo "[setup-python] installing nanobind==$NANOBIND_VERSION scikit-build-core==$SCIKIT_BUILD_CORE_VERSION pytest==$PYTEST_VERSION numpy==$NUMPY_VERSION" >&2
  "$MQKV_PY" -m pip install --quiet "nanobind==$NANOBIND_VERSION" "scikit-build-core==$SCIKIT_BUILD_CORE_VERSION" \
    "pytest==$PYTEST_VERSION" "numpy==$NUMPY_VERSION"
  touch "$STAMP"
fi

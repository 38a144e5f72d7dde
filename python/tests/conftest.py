"""Shared fixtures of the Python package's tests (run by scripts/test.sh: python/tests/run.sh).

The package under test is whatever `import mqkv` finds: the build tree's (PYTHONPATH=build/python)
or an installed wheel. MQKV_BUILD_DIR names the build whose tools (mqconvert, mqverify) the tests
compare against (default: build/).
"""
from __future__ import annotations

import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "smollm2-pride-and-prejudice.mqkv"


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("MQKV_BUILD_DIR", ROOT / "build"))


@pytest.fixture
def tool():
    """tool("mqconvert", args...) -> CompletedProcess (text), from the C++ build."""
    def run(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = build_dir() / "tools" / name
        if not exe.exists():
            pytest.fail(f"{exe} is missing: build the tools first (scripts/build.sh)")
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"{name} {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}{p.stderr}")
        return p
    return run


@pytest.fixture
def rows():
    """rows(tokens, heads, dim, dtype) -> deterministic KV-like rows."""
    def make(t: int = 96, h: int = 3, d: int = 64, dtype=np.float16, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((t, h, d)) * np.linspace(0.5, 3.0, d)
        return a.astype(dtype)
    return make


@pytest.fixture
def sample() -> pathlib.Path:
    return SAMPLE

"""The README's Python examples run as written (from a folder holding the repository's data/)."""
from __future__ import annotations

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def all_blocks():
    """Every python block of the README's Python section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def blocks():
    # The engine examples need a model and run where one is loaded: the llama.cpp one in
    # test_llama.py, the transformers one in test_hf.py.
    return [(i, b) for i, b in enumerate(all_blocks()) if "import llama_cpp" not in b and "mqkv.hf" not in b]


@pytest.mark.parametrize("index,code", blocks())
def test_readme_example(index, code, tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_has_examples():
    assert len(blocks()) >= 2

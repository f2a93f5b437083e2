"""The hot modules run compiled in this checkout, and the same sources pass as pure Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vidim.compiled import (
    COMPILED_MODULES,
    PURE_PYTHON_VARIABLE,
    compiled_modules,
    module_name,
    stale_modules,
)

ROOT = Path(__file__).resolve().parent.parent
PURE = os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0")


def test_every_listed_module_exists_and_is_listed_once() -> None:
    assert len(set(COMPILED_MODULES)) == len(COMPILED_MODULES)
    for path in COMPILED_MODULES:
        assert (ROOT / path).is_file(), path
    # The daemon's own code and the focus stay interpreted.
    assert not [p for p in COMPILED_MODULES if p.startswith(("vidim/focus/", "daemon/"))]


def _tree(root: Path, **mtimes: float) -> None:
    """Two listed modules' sources, their .so shims and the group library, dated."""
    files = {
        "uri_py": "vidim/sip/uri.py",
        "uri_so": "vidim/sip/uri.cpython-311-x86_64-linux-gnu.so",
        "ids_py": "vidim/sip/ids.py",
        "ids_so": "vidim/sip/ids.cpython-311-x86_64-linux-gnu.so",
        "group": "vidim/native__mypyc.cpython-311-x86_64-linux-gnu.so",
    }
    for key, when in mtimes.items():
        path = root / files[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        os.utime(path, (when, when))


def test_a_module_is_stale_when_its_source_is_newer_than_the_compiled_code(tmp_path: Path) -> None:
    # The code is in the group library: shims older than the sources do not matter.
    _tree(tmp_path, uri_py=200, ids_py=200, uri_so=100, ids_so=100, group=300)
    assert stale_modules(tmp_path) == []
    # An edit after the build: that module, and only it.
    os.utime(tmp_path / "vidim/sip/uri.py", (400, 400))
    assert stale_modules(tmp_path) == ["vidim/sip/uri.py"]


def test_without_a_group_library_each_module_is_its_own_code(tmp_path: Path) -> None:
    _tree(tmp_path, uri_py=200, uri_so=300, ids_py=200, ids_so=100)
    assert stale_modules(tmp_path) == ["vidim/sip/ids.py"]
    _tree(tmp_path / "pure", uri_py=200, ids_py=200)  # nothing compiled: runs from source
    assert stale_modules(tmp_path / "pure") == []


def test_the_hot_modules_run_compiled_unless_pure_python_was_asked_for() -> None:
    expected = [] if PURE else [module_name(path) for path in COMPILED_MODULES]
    assert compiled_modules() == expected


@pytest.mark.skipif(PURE, reason="the whole suite is running as pure Python already")
def test_the_sans_io_suites_pass_as_pure_python(tmp_path: Path) -> None:
    """The compiled build is an optimisation: the same files must work without it."""
    shutil.copytree(ROOT / "vidim", tmp_path / "vidim", ignore=shutil.ignore_patterns("*.so"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), PURE_PYTHON_VARIABLE: "1"}
    result = subprocess.run(
        # -P: the checkout (cwd) must not come before PYTHONPATH on sys.path.
        [
            sys.executable,
            "-P",
            "-m",
            "pytest",
            "-x",
            "-p",
            "no:cacheprovider",
            "tests/sip",
            "tests/allocator",
            "tests/formats",
            "tests/test_overload.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "vidim: pure Python" in output, output[-3000:]
    assert result.returncode == 0, output[-3000:]
    assert " passed" in output

"""The hot modules run compiled in this checkout, and the same sources pass as pure Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vidim.compiled import COMPILED_MODULES, PURE_PYTHON_VARIABLE, compiled_modules, module_name

ROOT = Path(__file__).resolve().parent.parent
PURE = os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0")


def test_every_listed_module_exists_and_is_listed_once() -> None:
    assert len(set(COMPILED_MODULES)) == len(COMPILED_MODULES)
    for path in COMPILED_MODULES:
        assert (ROOT / path).is_file(), path
    # The daemon's own code and the focus stay interpreted.
    assert not [p for p in COMPILED_MODULES if p.startswith(("vidim/focus/", "daemon/"))]


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
        [sys.executable, "-P", "-m", "pytest", "-x", "-p", "no:cacheprovider",
         "tests/sip", "tests/allocator", "tests/formats", "tests/test_overload.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    output = result.stdout + result.stderr
    assert "vidim: pure Python" in output, output[-3000:]
    assert result.returncode == 0, output[-3000:]
    assert " passed" in output

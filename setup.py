"""Build vidim: metadata in setup.cfg; the hot modules compiled with mypyc.

The modules listed in ``vidim/compiled.py`` (COMPILED_MODULES) are compiled to C
extensions by mypyc, from the same files that run as pure Python.  Set
``VIDIM_PURE_PYTHON=1`` when building to install pure Python only (no C compiler
needed).  docs/performance.md, "Compiled with mypyc", says what this buys.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _compiled_modules() -> tuple[str, ...]:
    """COMPILED_MODULES from vidim/compiled.py, read without importing vidim."""
    tree = ast.parse((ROOT / "vidim" / "compiled.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "COMPILED_MODULES"
            and node.value is not None
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return value
    raise RuntimeError("vidim/compiled.py has no COMPILED_MODULES")


def _ext_modules() -> list[object]:
    if os.environ.get("VIDIM_PURE_PYTHON", "") not in ("", "0"):
        return []
    from mypyc.build import mypycify

    # One group, vidim/native__mypyc*.so: calls between compiled modules stay native C calls.
    return list(mypycify(list(_compiled_modules()), opt_level="3", group_name="vidim.native"))


setup(ext_modules=_ext_modules())

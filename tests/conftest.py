"""Suite-wide guard: never test a compiled module older than its source.

scripts/setup compiles the modules listed in vidim/compiled.py in place (mypyc); an
extension left from before an edit would shadow the edited file and the suite would test
old code.  Running pytest directly after an edit stops here with the command that fixes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import vidim
from vidim.compiled import COMPILED_MODULES, PURE_PYTHON_VARIABLE, compiled_modules, stale_modules

ROOT = Path(__file__).resolve().parent.parent


def _stale_extensions() -> list[str]:
    """Compiled modules of this checkout older than their source, if vidim comes from here."""
    if Path(vidim.__file__).resolve().parent != ROOT / "vidim":
        return []  # vidim is imported from elsewhere (e.g. a pure-Python copy)
    return stale_modules(ROOT)


def pytest_configure(config: pytest.Config) -> None:
    stale = _stale_extensions()
    if stale:
        pytest.exit(
            f"compiled modules older than their sources: {', '.join(stale)}; run scripts/setup "
            f"to rebuild them (or {PURE_PYTHON_VARIABLE}=1 scripts/setup to run pure Python)",
            returncode=4,
        )


def pytest_report_header(config: pytest.Config) -> str:
    compiled = compiled_modules()
    if not compiled:
        return "vidim: pure Python"
    return f"vidim: {len(compiled)} of {len(COMPILED_MODULES)} modules compiled with mypyc"

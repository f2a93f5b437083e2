"""The ``site`` fixture of the end-to-end tests (helpers: e2e_peers.py).

Named modules (not imports from conftest) because tests/integration has a conftest too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "integration"),
                str(Path(__file__).resolve().parent)]  # fmt: skip

from e2e_peers import Site  # noqa: E402


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """Kamailio + vidim-daemon + phones of one test; everything stopped at teardown."""
    world = Site(tmp_path)
    try:
        yield world
    finally:
        world.teardown()

"""``python -m vidim_daemon``: the same as the ``vidim-daemon`` command."""

from __future__ import annotations

from .cli import main

main()

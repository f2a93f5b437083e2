"""vidim-daemon: the thin process around vidim's sans-IO allocator and focus.

A package of its own (``vidim_daemon``, source in ``daemon/``): a top-level
package named ``daemon`` would clash with python-daemon.
"""

from __future__ import annotations

__all__: list[str] = []

"""Fresh identifiers: Via branches, tags and Call-IDs, all from ``os.urandom``.

One place for them, so that every layer draws them the same way.  The bytes come
from ``os.urandom`` (the source ``secrets`` reads), 4 KiB at a time: a setup
draws about twenty identifiers, and one ``getrandom`` system call each was 2% of
the daemon's CPU at 800 setups/s.  Bytes are handed out once, even when threads
ask together (a lock, or the GIL where that suffices: :meth:`_Pool.take`), and a
forked child starts a pool of its own, so no two identifiers share random bytes.
"""

from __future__ import annotations

import importlib.machinery
import os
import threading
from typing import Final

__all__ = ["MAGIC_COOKIE", "new_branch", "new_call_id", "new_tag", "random_bytes"]

#: The RFC 3261 branch prefix (section 8.1.1.7).
MAGIC_COOKIE: Final = "z9hG4bK"

#: Bytes read from ``os.urandom`` at a time.
POOL_SIZE: Final = 4096
#: Whether this module runs compiled by mypyc (see _Pool.take).
_COMPILED: Final = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


class _Pool:
    """Random bytes read ahead; each byte is handed out once."""

    __slots__ = ("data", "lock", "offset")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data = b""
        self.offset = 0

    def take(self, count: int) -> bytes:
        if count > POOL_SIZE // 4:  # large asks are rare: not worth the pool
            return os.urandom(count)
        if _COMPILED:
            # Compiled, these lines run without giving up the GIL (no call into
            # Python, no system call), so no other thread runs between reading
            # the offset and moving it: the lock is only for a refill, whose
            # os.urandom does let other threads run.  A setup takes about
            # eighteen identifiers, and the lock's __enter__ and __exit__ calls
            # were 1.7% of the daemon's instructions (bench/setup_cost.py).
            data = self.data
            start = self.offset
            end = start + count
            if end <= len(data):
                self.offset = end
                return data[start:end]
        with self.lock:
            start = self.offset
            end = start + count
            if end > len(self.data):
                self.data = os.urandom(POOL_SIZE)
                start, end = 0, count
            self.offset = end
            return self.data[start:end]

    def forget(self) -> None:
        """In a forked child: the parent's bytes, past and future, are not this process's."""
        self.lock = threading.Lock()
        self.data = b""
        self.offset = 0


_POOL: Final = _Pool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)


def random_bytes(count: int) -> bytes:
    """``count`` bytes from ``os.urandom``, never handed out before in this process."""
    return _POOL.take(count)


def new_branch() -> str:
    """A Via branch: the magic cookie plus 128 random bits."""
    return MAGIC_COOKIE + _POOL.take(16).hex()


def new_tag() -> str:
    """A From/To tag: 64 random bits, well above the 32 RFC 3261 section 19.3 asks for."""
    return _POOL.take(8).hex()


def new_call_id() -> str:
    """A Call-ID that is unique without a host part (128 random bits)."""
    return _POOL.take(16).hex()

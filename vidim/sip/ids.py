"""Fresh identifiers: Via branches, tags and Call-IDs, from :mod:`secrets`.

One place for them, so that every layer draws them the same way.
"""

from __future__ import annotations

import secrets

__all__ = ["MAGIC_COOKIE", "new_branch", "new_call_id", "new_tag", "random_bytes"]

#: The RFC 3261 branch prefix (section 8.1.1.7).
MAGIC_COOKIE = "z9hG4bK"


def random_bytes(count: int) -> bytes:
    """``count`` random bytes (for identifiers other layers make)."""
    return secrets.token_bytes(count)


def new_branch() -> str:
    """A Via branch: the magic cookie plus 128 random bits."""
    return MAGIC_COOKIE + secrets.token_hex(16)


def new_tag() -> str:
    """A From/To tag: 64 random bits, well above the 32 RFC 3261 section 19.3 asks for."""
    return secrets.token_hex(8)


def new_call_id() -> str:
    """A Call-ID that is unique without a host part (128 random bits)."""
    return secrets.token_hex(16)

"""One boolean attribute stored as a bit of an object's ``_flags`` int.

Conference records and dialogs live by the hundred thousand (docs/performance.md,
"Memory per live conference"): several booleans in one int save a slot each.
"""

from __future__ import annotations

from typing import Any, overload

__all__ = ["BitFlag"]


class BitFlag:
    """A read-write ``bool`` attribute kept in ``instance._flags & mask``."""

    __slots__ = ("mask",)

    def __init__(self, mask: int) -> None:
        self.mask = mask

    @overload
    def __get__(self, instance: None, owner: type) -> BitFlag: ...
    @overload
    def __get__(self, instance: object, owner: type) -> bool: ...
    def __get__(self, instance: Any, owner: type) -> bool | BitFlag:
        if instance is None:
            return self
        return bool(instance._flags & self.mask)

    def __set__(self, instance: Any, value: bool) -> None:
        mask = self.mask
        instance._flags = (instance._flags & ~mask) | (mask if value else 0)

""":class:`FieldRecord`, what the events of the transaction layer and the allocator share.

(Kept until those events become frozen dataclasses.)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["FieldRecord"]


class FieldRecord:
    """Equal, hashable and shown by the fields named in ``_FIELDS``, in order.

    Treat them as read-only.
    """

    __slots__ = ()

    #: The fields, in order: what ``==``, ``hash`` and ``repr`` look at.
    _FIELDS: ClassVar[tuple[str, ...]] = ()

    def _key(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self._FIELDS])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, FieldRecord)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(self._FIELDS, self._key(), strict=True)
        )
        return f"{type(self).__name__}({fields})"

"""What the immutable value types and the events share: equality and hashing by their parts.

The value types (:class:`~vidim.sip.SipURI`, :class:`~vidim.sip.NameAddr`,
:class:`~vidim.sip.Via`, :class:`~vidim.sip.CSeq`,
:class:`~vidim.sip.MediaType`) are ``__slots__`` classes with read-only
properties, for speed (see docs/performance.md); each says what it is made
of in ``_key()`` and inherits the rest from here.  The events of the
transaction layer and of the allocator name their fields in ``_FIELDS`` and
inherit from :class:`FieldRecord`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["FieldRecord", "ValueType"]


class ValueType:
    """Equal when of the same class with equal ``_key()``; hashable likewise."""

    __slots__ = ()

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ValueType)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class FieldRecord(ValueType):
    """Equal, hashable and shown by the fields named in ``_FIELDS``, in order.

    What a frozen dataclass gave the events, for plain classes with a
    keyword-only constructor of their own: compiled by mypyc, making one is a
    direct call, where a dataclass's generated ``__init__`` runs as Python.
    Treat them as read-only.
    """

    __slots__ = ()

    #: The fields, in order: what ``==``, ``hash`` and ``repr`` look at.
    _FIELDS: ClassVar[tuple[str, ...]] = ()

    def _key(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self._FIELDS])

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(self._FIELDS, self._key(), strict=True)
        )
        return f"{type(self).__name__}({fields})"

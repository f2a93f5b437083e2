"""What the immutable header value types share: equality and hashing by their parts.

The value types (:class:`~vidim.sip.SipURI`, :class:`~vidim.sip.NameAddr`,
:class:`~vidim.sip.Via`, :class:`~vidim.sip.CSeq`,
:class:`~vidim.sip.MediaType`) are ``__slots__`` classes with read-only
properties, for speed (see docs/performance.md); each says what it is made
of in ``_key()`` and inherits the rest from here.
"""

from __future__ import annotations

__all__ = ["ValueType"]


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

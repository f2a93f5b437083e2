"""BitFlag: booleans kept as bits of one ``_flags`` int."""

from __future__ import annotations

from vidim.bitflag import BitFlag


class Holder:
    __slots__ = ("_flags",)
    first = BitFlag(1)
    second = BitFlag(2)

    def __init__(self) -> None:
        self._flags = 0


def test_each_flag_sets_and_clears_its_own_bit_only() -> None:
    holder = Holder()
    holder.first = True
    assert holder.first is True
    assert holder.second is False
    holder.second = True
    assert holder._flags == 3
    holder.first = False
    assert (holder.first, holder.second, holder._flags) == (False, True, 2)


def test_on_the_class_it_is_the_descriptor() -> None:
    assert isinstance(Holder.first, BitFlag)
    assert Holder.second.mask == 2

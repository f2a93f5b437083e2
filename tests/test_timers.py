"""Keyed deadlines (vidim.timers): one live deadline per key, taken in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vidim.timers import Timers


def test_arm_sets_and_re_arm_replaces() -> None:
    timers: Timers[str] = Timers()
    timers.arm("a", 5.0)
    assert (timers.deadline("a"), len(timers), "a" in timers) == (5.0, 1, True)
    timers.arm("a", 2.0)
    timers.arm("a", 9.0)
    assert (timers.deadline("a"), len(timers), timers.next_deadline()) == (9.0, 1, 9.0)
    assert list(timers.pop_due(8.9)) == []
    assert list(timers.pop_due(9.0)) == ["a"]  # at the deadline, once
    assert (timers.deadline("a"), len(timers), "a" in timers) == (None, 0, False)


def test_cancel() -> None:
    timers: Timers[str] = Timers()
    timers.arm("a", 1.0)
    timers.arm("b", 2.0)
    timers.cancel("a")
    timers.cancel("never armed")
    assert ("a" in timers, timers.deadline("a"), len(timers)) == (False, None, 1)
    assert list(timers.pop_due(10.0)) == ["b"]


def test_next_deadline_skips_dead_entries() -> None:
    timers: Timers[str] = Timers()
    assert timers.next_deadline() is None
    timers.arm("a", 1.0)
    timers.arm("b", 2.0)
    timers.arm("c", 3.0)
    timers.cancel("a")  # dead: cancelled
    timers.arm("b", 4.0)  # dead at 2.0: moved
    assert timers.next_deadline() == 3.0
    timers.cancel("c")
    assert timers.next_deadline() == 4.0
    timers.cancel("b")
    assert timers.next_deadline() is None


def test_pop_due_earliest_first_and_equal_deadlines_in_arming_order() -> None:
    timers: Timers[str] = Timers()
    for key, when in [("late", 3.0), ("b", 1.0), ("early", 0.5), ("a", 1.0), ("c", 1.0)]:
        timers.arm(key, when)
    assert list(timers.pop_due(2.0)) == ["early", "b", "a", "c"]
    assert (len(timers), timers.next_deadline()) == (1, 3.0)


def test_re_armed_to_the_same_deadline_goes_behind_the_others() -> None:
    timers: Timers[str] = Timers()
    timers.arm("a", 1.0)
    timers.arm("b", 1.0)
    timers.arm("a", 1.0)  # armed again: now the later of the two
    assert list(timers.pop_due(1.0)) == ["b", "a"]


def test_keys_need_not_compare() -> None:
    timers: Timers[object] = Timers()
    first, second = object(), object()
    timers.arm(first, 1.0)
    timers.arm(second, 1.0)
    assert list(timers.pop_due(1.0)) == [first, second]


def test_re_arming_inside_pop_due() -> None:
    """A key is forgotten before it is yielded: the caller may arm it again, due or not."""
    timers: Timers[str] = Timers()
    timers.arm("tick", 1.0)
    timers.arm("once", 1.5)
    fired = []
    for key in timers.pop_due(3.0):
        fired.append(key)
        assert key not in timers
        if key == "tick":
            # Armed again at a time already due: yielded in this same pass, in order.
            timers.arm("tick", fired.count("tick") + 1.0)
        if key == "once":
            timers.arm("once", 10.0)  # not due: stays
    assert fired == ["tick", "once", "tick", "tick"]
    assert (timers.deadline("tick"), timers.deadline("once")) == (4.0, 10.0)


def test_cancelled_inside_pop_due_is_not_yielded() -> None:
    timers: Timers[str] = Timers()
    timers.arm("a", 1.0)
    timers.arm("b", 2.0)
    fired = []
    for key in timers.pop_due(5.0):
        fired.append(key)
        timers.cancel("b")
    assert fired == ["a"]
    assert len(timers) == 0


# -- against a reference model ------------------------------------------------------------

# Few keys and few times, arming the commonest step: re-arms and equal deadlines are frequent.
_STEP = st.tuples(
    st.sampled_from(["arm", "arm", "arm", "cancel", "pop"]),
    st.sampled_from("abc"),
    st.integers(0, 3).map(float),
)


class Reference:
    """The plainest model: a dict key -> (deadline, arming number), scanned in full."""

    def __init__(self) -> None:
        self.due: dict[str, tuple[float, int]] = {}
        self.armed = 0

    def arm(self, key: str, when: float) -> None:
        self.armed += 1
        self.due[key] = (when, self.armed)

    def cancel(self, key: str) -> None:
        self.due.pop(key, None)

    def next_deadline(self) -> float | None:
        return min((when for when, _ in self.due.values()), default=None)

    def pop_due(self, now: float) -> list[str]:
        due = sorted((entry, key) for key, entry in self.due.items() if entry[0] <= now)
        for _, key in due:
            del self.due[key]
        return [key for _, key in due]


@settings(max_examples=300)
@given(st.lists(_STEP, min_size=4, max_size=40))
def test_against_a_reference_model(steps: list[tuple[str, str, float]]) -> None:
    timers: Timers[str] = Timers()
    model = Reference()
    for action, key, when in steps:  # cancel ignores when, pop ignores key
        if action == "arm":
            timers.arm(key, when)
            model.arm(key, when)
        elif action == "cancel":
            timers.cancel(key)
            model.cancel(key)
        else:
            assert list(timers.pop_due(when)) == model.pop_due(when)
        assert timers.next_deadline() == model.next_deadline()
        assert len(timers) == len(model.due)
        for k in "abc":
            entry = model.due.get(k)
            assert timers.deadline(k) == (entry[0] if entry else None)
            assert (k in timers) is (entry is not None)

"""vidim.sip.ids: identifiers in the forms RFC 3261 asks for, drawn from secrets."""

from __future__ import annotations

import re

from vidim.sip import ids


def test_the_forms_rfc_3261_asks_for() -> None:
    branch, tag, call_id = ids.new_branch(), ids.new_tag(), ids.new_call_id()
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{32}", branch)  # the magic cookie, 128 bits
    assert re.fullmatch(r"[0-9a-f]{16}", tag)  # 64 bits
    assert re.fullmatch(r"[0-9a-f]{32}", call_id)  # 128 bits
    assert len(ids.random_bytes(5)) == 5


def test_identifiers_do_not_repeat() -> None:
    tags = [ids.new_tag() for _ in range(20_000)]
    assert len(set(tags)) == len(tags)
    branches = [ids.new_branch() for _ in range(5_000)]
    assert len(set(branches)) == len(branches)

"""vidim.sip.ids: identifiers drawn from a pool of os.urandom bytes, each byte used once."""

from __future__ import annotations

import os
import re
import sys
import threading

import pytest

from vidim.sip import ids


def test_the_forms_rfc_3261_asks_for() -> None:
    branch, tag, call_id = ids.new_branch(), ids.new_tag(), ids.new_call_id()
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{32}", branch)  # the magic cookie, 128 bits
    assert re.fullmatch(r"[0-9a-f]{16}", tag)  # 64 bits
    assert re.fullmatch(r"[0-9a-f]{32}", call_id)  # 128 bits
    assert len(ids.random_bytes(5)) == 5
    assert len(ids.random_bytes(ids.POOL_SIZE)) == ids.POOL_SIZE  # past the pool: urandom itself


def test_no_identifier_repeats_across_many_pool_refills() -> None:
    # 20,000 tags are 160,000 bytes: about 40 refills of the 4 KiB pool.
    tags = [ids.new_tag() for _ in range(20_000)]
    assert len(set(tags)) == len(tags)
    # Bytes are handed out once: consecutive draws never overlap, across a refill too.
    chunks = [ids.random_bytes(16) for _ in range(2 * ids.POOL_SIZE // 16 + 3)]
    assert len(set(chunks)) == len(chunks)


def test_threads_never_get_the_same_bytes() -> None:
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(into: list[str]) -> None:
        for _ in range(2_000):
            into.append(ids.new_call_id())

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as the interpreter lets them
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    every = [value for into in drawn for value in into]
    assert len(every) == 16_000
    assert len(set(every)) == len(every)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="needs fork")
def test_a_forked_child_draws_its_own_bytes() -> None:
    ids.new_tag()  # the pool holds bytes the child would otherwise share
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_end, " ".join(ids.new_tag() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode().split()
    os.waitpid(pid, 0)
    parent = [ids.new_tag() for _ in range(50)]
    assert len(child) == 50
    assert not set(child) & set(parent)

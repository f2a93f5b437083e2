"""Redis stopped and started mid-run under one daemon (issue 16, "How it is shown").

Real processes on loopback: ``redis-server`` (no persistence: it comes back
empty, the hard case), ``vidim-daemon run --store redis://...`` with an
external focus played by this test (:class:`FocusPeer`), and this test as every
requester.  While Redis is gone: new conferences get 503 with Retry-After and
a Warning, the WARNING is in the log, and the conferences already running go
on from memory (the focus's in-dialog OPTIONS on an anchor is answered 200, not
481; ``/status`` and ``/end`` are answered from memory, or refused 503 like any
new request: the lead may narrow the refusal to requests that create a conference).  When
Redis is back on the same port: new conferences get 202 again and none is
lost, in the running daemon and in Redis (a daemon restarted on it finds them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from daemon_peers import HOST, DaemonProcess, FocusPeer, SipClient

from redis_peer import RedisServer
from vidim.sip import Request, Response, new_branch, new_tag

pytestmark = pytest.mark.timeout(120)

CONFERENCES = 5
SERVICE = "sip:vidim@localhost"
RECORDS_KEY = "vidim:{allocator}:records"
#: Nothing periodic rewrites a record (keepalives an hour apart): what is in
#: Redis after the outage is what the daemon wrote back because Redis came back.
CONFIG = "[timers]\nkeepalive_interval = 3600.0\nidle_timeout = 3600.0\n"
#: The Warning of a 503 while the store fails ("state store unreachable; try again
#: later", or "the state store is unreachable; ..."): the words that say why.
#: Seconds Redis, back empty, may take to hold every live record again.
CATCH_UP = 6.0
STORE_WARNING = re.compile(r"state store (is )?unreachable")


class Focus(FocusPeer):
    """The external focus, which can also send an in-dialog OPTIONS on an anchor."""

    def __init__(self) -> None:
        self.anchors: dict[str, Request] = {}  # Call-ID -> the daemon's INVITE
        self.answers: dict[str, Response] = {}  # Call-ID of our OPTIONS -> final answer
        super().__init__()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        if isinstance(message, Response):
            if message.status >= 200:
                self.answers[f"{message.call_id} {message.cseq}"] = message
            return
        if message.method == "INVITE" and message.to_addr.tag is None:
            self.anchors.setdefault(message.call_id, message)
        super().handle(message, addr)

    def options_on_anchor(self, call_id: str, daemon_port: int, cseq: int) -> Response:
        """An in-dialog OPTIONS on the anchor ``call_id``, as a focus checking it does."""
        invite = self.anchors[call_id]
        contact = (invite.headers.get("Contact") or "").strip()
        target = contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else contact
        request = Request(
            "OPTIONS",
            target,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"{invite.headers.get('To')};tag={self.invited[call_id]}"),
                ("To", invite.headers.get("From") or ""),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} OPTIONS"),
            ],
        )
        key = f"{call_id} {cseq} OPTIONS"
        self.sock.sendto(request.to_bytes(), (HOST, daemon_port))
        self.wait_for(lambda: key in self.answers, f"an answer to {key}")
        return self.answers[key]


class Requesters(SipClient):
    """Every requester; keeps the IMs the daemon sends (status, end notices)."""

    def __init__(self) -> None:
        self.ims: list[Request] = []
        super().__init__()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        if isinstance(message, Request) and message.method == "MESSAGE":
            self.ims.append(message)
        super().handle(message, addr)

    def command(self, port: int, user: str, text: str) -> str:
        """``/status``, ``/end``...: a text MESSAGE from ``user`` to the service; its Call-ID."""
        call_id = new_tag() + new_tag()
        request = Request(
            "MESSAGE",
            SERVICE,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{user}@localhost>;tag={new_tag()}"),
                ("To", f"<{SERVICE}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", "text/plain"),
            ],
            text.encode(),
        )
        self.sock.sendto(request.to_bytes(), (HOST, port))
        return call_id

    def status_texts(self, port: int, users: list[str]) -> dict[str, str]:
        """Each user's ``/status`` answered 202, then the status IM it gets back."""
        before = len(self.ims)
        for user in users:
            answer = self.wait_answer(self.command(port, user, "/status"))
            assert answer.status == 202, (user, answer.status, answer.headers.get("Warning"))

        def statuses() -> list[Request]:
            return [im for im in self.ims[before:] if im.body.startswith(b"Conference #")]

        self.wait_for(lambda: len(statuses()) >= len(users), f"{len(users)} status IMs")
        return {
            im.to_addr.uri.user or "": im.body.decode()  # type: ignore[union-attr]
            for im in statuses()
        }


@dataclass
class Outage:
    """What the outage scenario leaves: the processes, and the conferences live after it."""

    redis: RedisServer
    daemon: DaemonProcess
    focus: Focus
    requesters: Requesters
    live: list[str] = field(default_factory=list)  # requesters with a live conference
    ended: list[str] = field(default_factory=list)  # requesters whose conference ended


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """Run the outage scenario once (asserting on the way) for the tests below, in order;
    the processes stop in the finalizer."""
    tmp_path = tmp_path_factory.mktemp("outage")
    server = RedisServer(tmp_path)
    server.start()
    focus, requesters = Focus(), Requesters()
    daemons: list[DaemonProcess] = []
    try:
        daemons.append(
            DaemonProcess(tmp_path, ["--focus", focus.uri, "--store", server.url], CONFIG)
        )
        state = Outage(server, daemons[0], focus, requesters)
        run_outage(state)
        yield state
    finally:
        for daemon in daemons:
            daemon.stop()
        focus.close()
        requesters.close()
        server.stop()


def new_conference(state: Outage, user: str) -> Response:
    invitee = f"sip:bob@{HOST}:{state.focus.port}"
    return state.requesters.wait_answer(
        state.requesters.message(state.daemon.port, invitee, user=user)
    )


def run_outage(state: Outage) -> None:
    daemon, focus, requesters = state.daemon, state.focus, state.requesters
    daemon.wait_ready(requesters)
    before = [f"before{i}" for i in range(CONFERENCES)]
    for user in before:
        assert new_conference(state, user).status == 202
    focus.wait_for(lambda: len(focus.invited) == CONFERENCES, f"{CONFERENCES} INVITEs")
    state.live += before
    stored = redis.Redis.from_url(state.redis.url)
    try:
        wait_until(lambda: stored.hlen(RECORDS_KEY) == CONFERENCES, "the records in Redis")
    finally:
        stored.close()

    state.redis.stop()
    # The daemon learns of the outage from a failed write: the first new request
    # may be accepted (it was told before its record could be stored: it is then
    # written when Redis is back); every one after it gets 503.
    answers = [new_conference(state, f"during{i}") for i in range(3)]
    statuses = [a.status for a in answers]
    assert statuses in ([503, 503, 503], [202, 503, 503]), statuses
    state.live += [f"during{i}" for i, a in enumerate(answers) if a.status == 202]
    for refusal in answers[-2:]:
        assert refusal.headers.get("Retry-After") is not None
        assert STORE_WARNING.search(refusal.headers.get("Warning") or "")
    warning = daemon.wait_log("conferences go on from memory")
    assert warning["level"] == "warning"

    # The conferences go on from memory: the focus's in-dialog OPTIONS gets 200, not 481.
    # On two anchors only: the others see nothing during the outage (no record change).
    for cseq, call_id in enumerate(list(focus.anchors)[:2], start=2):
        assert focus.options_on_anchor(call_id, daemon.port, cseq).status == 200
    # /status: answered from memory, or refused like any new request for now (the
    # lead may narrow the 503 to requests that create a conference).
    status = requesters.wait_answer(requesters.command(daemon.port, before[1], "/status"))
    assert status.status in (202, 503), status.status
    if status.status == 202:
        assert "active" in requesters.status_texts(daemon.port, [before[1]])[before[1]]
    else:
        assert STORE_WARNING.search(status.headers.get("Warning") or "")
    # /end: ends it (BYE to the focus), or refused like any new request for now.
    ending = before[0]
    end = requesters.wait_answer(requesters.command(daemon.port, ending, "/end"))
    assert end.status in (202, 503), end.status
    if end.status == 202:
        focus.wait_for(lambda: len(focus.byes) == 1, "the BYE of /end")
        state.live.remove(ending)
        state.ended.append(ending)
    else:
        assert STORE_WARNING.search(end.headers.get("Warning") or "")
    # Every few seconds the WARNING again, while Redis is away.
    daemon.wait_log("still failing after", timeout=10)

    state.redis.start()  # same port, empty
    daemon.wait_log("answers again after", timeout=10)
    assert new_conference(state, "after").status == 202
    state.live.append("after")
    focus.wait_for(lambda: len(focus.invited) == len(state.live) + len(state.ended), "INVITEs")
    # No conference lost in the running daemon.
    texts = requesters.status_texts(daemon.port, state.live)
    assert sorted(texts) == sorted(state.live)
    assert all("active" in text for text in texts.values()), texts


def wait_until(predicate: object, what: str, timeout: float = 10.0) -> None:
    """Polls something outside the test's sockets (Redis), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def test_redis_outage_refuses_new_conferences_and_loses_none(outage: Outage) -> None:
    """The scenario's assertions (the fixture) hold, and only /end sent a BYE."""
    assert len(outage.focus.byes) == len(outage.ended)
    assert outage.daemon.proc.poll() is None


def test_after_redis_comes_back_empty_a_restarted_daemon_finds_every_conference(
    outage: Outage, tmp_path: Path
) -> None:
    """Last (it kills the daemon the scenario left running)."""
    stored = redis.Redis.from_url(outage.redis.url)
    try:
        # Caught up: every record the daemon drives is in Redis again, within a lease
        # renewal (lease_ttl / 3: 3.3 s by default), well before the hour-long
        # keepalive would rewrite it anyway.
        try:
            wait_until(lambda: stored.hlen(RECORDS_KEY) >= len(outage.live), "records", CATCH_UP)
        except AssertionError:
            count = stored.hlen(RECORDS_KEY)
            raise AssertionError(
                f"{count} records in Redis {CATCH_UP} s after it came back, {len(outage.live)} live"
            ) from None
    finally:
        stored.close()
    old = outage.daemon
    old.signal(9)
    old.proc.wait(timeout=10)
    (tmp_path / "restarted").mkdir()
    daemon = DaemonProcess(
        tmp_path / "restarted",
        ["--focus", outage.focus.uri, "--store", outage.redis.url],
        CONFIG,
        port=old.port,
        focus_port=old.focus_port,
    )
    try:
        daemon.wait_ready(outage.requesters)
        # "N conference(s) restored from URL", or "resumed from" with a shared store.
        restored = daemon.wait_log(" from redis://")
        assert str(restored["message"]).startswith(f"{len(outage.live)} conference(s) re")
        texts = outage.requesters.status_texts(daemon.port, outage.live)
        assert sorted(texts) == sorted(outage.live)
    finally:
        daemon.stop()

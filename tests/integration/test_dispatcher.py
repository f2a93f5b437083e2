"""Several vidim daemons behind Kamailio's dispatcher, sharing one Redis (issue 16).

Real processes on 127.0.0.1: redis-server; one external focus (``vidim-daemon focus``
in its own process); vidim daemons (``vidim-daemon run``, each with its own
``--listen``, all on the same ``--store redis://...`` and ``--focus``); Kamailio on
the shipped examples/kamailio/kamailio.cfg with ``WITH_DISPATCHER`` and a list of
the daemons; and this test as every requester and invitee (one UDP socket,
registered at Kamailio for each user, answering every IM 200).

Why an external focus: a conference on a daemon's built-in focus lives in that
daemon's process (its RTP ports and participants' dialogs), so it would die with the
daemon; behind a dispatcher every daemon hands its conferences to one focus they
share.  It also logs the source of every request it gets, which is what shows
which daemon drives each anchor dialog.

The first test needs only what main has; the second needs the leases and follow-up
forwarding of issue 16 (``lease_ttl``) and is an expected failure until the daemon
has that setting.
"""

from __future__ import annotations

import datetime as dt
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sip_peers import (
    HOST,
    Kamailio,
    VidimProcess,
    dispatcher_defines,
    dispatcher_states,
    free_port,
    new_branch,
    start_example_kamailio_ready,
    stop_process_group,
)

from redis_peer import RedisServer
from vidim.sip import Request, Response, make_response, new_tag, parse_message

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DOMAIN = "vidim.test"
SERVICE = f"sip:vidim@{DOMAIN}"
WAIT = 15.0
PING = 1  # seconds between the dispatcher's OPTIONS to each daemon
LEASE_TTL = 2.0  # seconds (the daemons' lease_ttl in the lease test)


class Crowd:
    """Every requester and invitee: one UDP socket, each user registered on it.

    Answers every request it gets (the daemons' IMs) with 200 and keeps it; keeps
    every final response.  Single-threaded: :meth:`pump_until` reads until a
    condition holds, bounded by its timeout.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((HOST, 0))
        self.port = int(self.sock.getsockname()[1])
        self.finals: dict[str, Response] = {}
        self.ims: list[Request] = []

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, uri: str, user: str, *, headers: tuple[tuple[str, str], ...] = (),
                body: str = "", to: str | None = None) -> Request:  # fmt: skip
        return Request(
            method,
            uri,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{user}@{DOMAIN}>;tag={new_tag()}"),
                ("To", f"<{to or uri}>"),
                ("Call-ID", new_tag() + new_tag()),
                ("CSeq", "1 " + method),
                ("Contact", f"<sip:{user}@{HOST}:{self.port}>"),
                *headers,
            ],
            body.encode(),
        )

    def pump_until(self, done: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout} s")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = parse_message(data)
            if isinstance(message, Response):
                if message.status >= 200:
                    self.finals.setdefault(message.call_id, message)
                continue
            if message.method != "ACK":
                if all(im.call_id != message.call_id for im in self.ims):
                    self.ims.append(message)  # not a retransmission
                reply = make_response(message, 200, to_tag=message.to_addr.tag or new_tag())
                self.sock.sendto(reply.to_bytes(), source)

    def ask(self, requests: list[Request], to: tuple[str, int], timeout: float = WAIT) -> list[int]:
        """Send every request, return their final statuses (in order)."""
        for request in requests:
            self.sock.sendto(request.to_bytes(), to)
        self.pump_until(
            lambda: all(r.call_id in self.finals for r in requests), "final answers", timeout
        )
        return [self.finals[r.call_id].status for r in requests]

    def register(self, users: list[str], kamailio: Kamailio) -> None:
        registers = [
            self.request("REGISTER", f"sip:{DOMAIN}", user, headers=(("Expires", "600"),),
                         to=f"sip:{user}@{DOMAIN}")
            for user in users
        ]  # fmt: skip
        assert self.ask(registers, kamailio.addr) == [200] * len(users)

    def ims_with(self, text: bytes, since: int = 0) -> list[Request]:
        return [im for im in self.ims[since:] if text in im.body]


@dataclass
class Fleet:
    """The processes of one test; everything is stopped at teardown."""

    workdir: Path
    redis: RedisServer
    focus_port: int = 0
    focus: VidimProcess | None = None
    kamailio: Kamailio | None = None
    daemons: dict[int, VidimProcess] = field(default_factory=dict)  # by listen port
    kamailios: list[Kamailio] = field(default_factory=list)

    def start(self, count: int, config: str = "") -> None:
        self.focus_port = free_port()
        self.focus = VidimProcess(
            "focus", ["focus", "--focus-listen", f"{HOST}:{self.focus_port}", "--store",
                      "memory:"], self.workdir,
        )  # fmt: skip
        self.focus.wait_ready(self.focus_port)
        ports = [free_port() for _ in range(count)]
        defines = dispatcher_defines(self.workdir / "dispatcher.list", [(HOST, p) for p in ports],
                                     ping=PING)  # fmt: skip
        self.kamailio = start_example_kamailio_ready(
            self.workdir, daemon=(HOST, ports[0]), focus=(HOST, self.focus_port),
            domain=DOMAIN, started=self.kamailios, defines=defines,
        )  # fmt: skip
        toml = self.workdir / "vidim.toml"
        toml.write_text(config)
        for port in ports:
            self.daemons[port] = VidimProcess(
                f"daemon-{port}",
                ["run", "--config", str(toml), "--listen", f"{HOST}:{port}",
                 "--focus", f"sip:conference-factory@{HOST}:{self.focus_port}",
                 "--store", self.redis.url, "--proxy", f"sip:{HOST}:{self.kamailio.port}",
                 "--domain", DOMAIN, "--no-probe"],
                self.workdir,
            )  # fmt: skip
        for port, daemon in self.daemons.items():
            daemon.wait_ready(port)
        # Each daemon joins the rotation at the first ping it answers.
        self.wait_states(lambda states: all(f.startswith("A") for f in states.values()),
                         "every daemon active")  # fmt: skip

    def uri(self, port: int) -> str:
        return f"sip:{HOST}:{port}"

    def wait_states(self, check: Callable[[dict[str, str]], bool], what: str) -> dict[str, str]:
        """Poll ``kamcmd dispatcher.list`` until ``check`` holds (bounded)."""
        assert self.kamailio is not None
        deadline = time.monotonic() + WAIT
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = dispatcher_states(self.kamailio)
            if check(states):
                return states
            time.sleep(0.1)  # polling Kamailio's state, bounded by the deadline
        raise AssertionError(f"Kamailio: not {what} within {WAIT} s: {states}")

    def wait_kamailio_log(self, words: str, timeout: float = WAIT) -> None:
        assert self.kamailio is not None
        deadline = time.monotonic() + timeout
        while words not in self.kamailio.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"Kamailio did not log {words!r} within {timeout} s")
            time.sleep(0.1)  # polling its log file, bounded by the deadline

    def created_by(self, requesters: list[str]) -> dict[str, tuple[int, str]]:
        """Requester -> (listen port of the daemon that accepted its conference, conference id)."""
        found: dict[str, tuple[int, str]] = {}
        for port, daemon in self.daemons.items():
            for record in daemon.messages("RequestAccepted("):
                text = str(record["message"])
                for requester in requesters:
                    if f"requester='sip:{requester}@{DOMAIN}'" in text and "command='new'" in text:
                        found[requester] = (port, str(record["conference_id"]))
        return found

    def teardown(self) -> None:
        for daemon in self.daemons.values():
            code = daemon.stop()
            print(f"--- {daemon.name} exited with {code}; log tail:\n{daemon.tail()}")
        if self.focus is not None:
            code = self.focus.stop()
            print(f"--- focus exited with {code}; log tail:\n{self.focus.tail()}")
        for kamailio in self.kamailios:
            code = stop_process_group(kamailio.proc)
            print(f"--- Kamailio exited with {code}; log tail:\n{kamailio.log()[-8000:]}")


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[Fleet]:
    world = Fleet(tmp_path, redis_server)
    try:
        yield world
    finally:
        world.teardown()


@pytest.fixture
def crowd() -> Iterator[Crowd]:
    people = Crowd()
    try:
        yield people
    finally:
        people.close()


def new_conferences(crowd: Crowd, fleet: Fleet, requesters: list[str]) -> list[int]:
    """Each requester asks for a video conference with bob, through Kamailio."""
    assert fleet.kamailio is not None
    requests = [
        crowd.request("MESSAGE", f"sip:bob@{DOMAIN}", r, headers=(("X-Vidim-Mode", "video"),))
        for r in requesters
    ]
    return crowd.ask(requests, fleet.kamailio.addr)


def commands(crowd: Crowd, fleet: Fleet, requesters: list[str], text: str) -> list[int]:
    """Each requester sends ``text`` (``/status``, ``/end``) to the service URI, through Kamailio."""
    assert fleet.kamailio is not None
    requests = [
        crowd.request("MESSAGE", SERVICE, r, headers=(("Content-Type", "text/plain"),), body=text)
        for r in requesters
    ]
    return crowd.ask(requests, fleet.kamailio.addr)


def test_requests_spread_over_the_daemons_and_fail_over(fleet: Fleet, crowd: Crowd) -> None:
    """Round robin over three daemons; a draining daemon's 503 and a dead daemon's
    silence both fail over to the next one, and the dead one leaves the rotation."""
    fleet.start(3, config="refuse_on_stop = 4.0\n")
    assert fleet.kamailio is not None
    first = [f"alice{i}" for i in range(9)]
    crowd.register([*first, "bob", *(f"carol{i}" for i in range(6))], fleet.kamailio)

    assert new_conferences(crowd, fleet, first) == [202] * len(first)
    crowd.pump_until(lambda: len(crowd.ims) >= 2 * len(first), "invitations and notices")
    created = fleet.created_by(first)
    assert sorted(created) == sorted(first)
    per_daemon = {port: sum(1 for p, _ in created.values() if p == port) for port in fleet.daemons}
    # Round robin: 3 each (at least 2: Kamailio's workers share the rotation's counter).
    assert all(n >= 2 for n in per_daemon.values()), f"not round robin: {per_daemon}"

    draining, dead, survivor = fleet.daemons
    # SIGTERM: the draining daemon answers 503 (to requests and to the pings) for 4 s;
    # kill -9: the dead one answers nothing.  Every new request still gets its 202.
    fleet.daemons[draining].proc.send_signal(signal.SIGTERM)
    fleet.daemons[draining].wait_log("stopping:")  # it refuses from here on
    fleet.daemons[dead].kill()
    later = [f"carol{i}" for i in range(6)]
    assert new_conferences(crowd, fleet, later) == [202] * len(later)
    assert {port for port, _ in fleet.created_by(later).values()} == {survivor}
    log = fleet.kamailio.log()
    assert f"failed over to vidim daemon {fleet.uri(survivor)}" in log
    assert f"vidim daemon {fleet.uri(dead)} did not answer MESSAGE" in log or (
        f"vidim daemon {fleet.uri(dead)} is down" in log
    ), "the dead daemon was neither timed out nor found down by the pings"

    # The pings take both out of the rotation (the dead one within PING + tm's fr_timer).
    fleet.wait_kamailio_log(f"vidim daemon {fleet.uri(dead)} is down")
    states = fleet.wait_states(
        lambda s: s[fleet.uri(dead)].startswith("I") and s[fleet.uri(draining)].startswith("I"),
        "the dead and the draining daemon inactive",
    )
    assert states[fleet.uri(survivor)].startswith("A"), states
    assert fleet.daemons[draining].proc.wait(timeout=WAIT) == 0

    # The last daemon drains too: its 503 reaches the requester as a 503, with its
    # Retry-After and Warning (tm alone would have made it a 500).
    fleet.daemons[survivor].proc.send_signal(signal.SIGTERM)
    fleet.daemons[survivor].wait_log("stopping:")
    refused = crowd.request(
        "MESSAGE", SERVICE, "carol0", headers=(("Content-Type", "text/plain"),), body="/status"
    )
    assert crowd.ask([refused], fleet.kamailio.addr) == [503]
    answer = crowd.finals[refused.call_id]
    assert answer.headers.get("Retry-After"), answer.to_bytes().decode()
    assert "shutting down" in (answer.headers.get("Warning") or ""), answer.to_bytes().decode()


def _log_time(record: dict[str, object]) -> float:
    stamp = str(record["time"]).removesuffix("Z")
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


def _peer_port(record: dict[str, object]) -> int:
    return int(str(record["peer"]).split("/")[0].rsplit(":", 1)[1])


def test_a_dead_daemons_conferences_are_adopted_and_end_by_end(fleet: Fleet, crowd: Crowd) -> None:
    """kill -9 one of two daemons: the other adopts its conferences within the lease
    TTL, ``/status`` and ``/end`` through Kamailio act on every conference, and no
    conference is ever driven by two daemons at once."""
    fleet.start(2, config=f"lease_ttl = {LEASE_TTL}\n[timers]\nkeepalive_interval = 0.5\n")
    assert fleet.kamailio is not None
    assert fleet.focus is not None
    requesters = [f"alice{i}" for i in range(8)]
    crowd.register([*requesters, "bob"], fleet.kamailio)
    assert new_conferences(crowd, fleet, requesters) == [202] * len(requesters)
    crowd.pump_until(lambda: len(crowd.ims) >= 2 * len(requesters), "invitations and notices")
    created = fleet.created_by(requesters)
    assert {port for port, _ in created.values()} == set(fleet.daemons), "both daemons used"

    # /status is answered for every conference, whichever daemon Kamailio picks.
    since = len(crowd.ims)
    assert commands(crowd, fleet, requesters, "/status") == [202] * len(requesters)
    crowd.pump_until(lambda: len(crowd.ims) >= since + len(requesters), "status IMs")
    statuses = crowd.ims[since:]
    assert sorted(str(im.uri).split("@")[0].removeprefix("sip:") for im in statuses) == sorted(
        requesters
    )
    assert all(im.body.startswith(b"Conference #") for im in statuses), statuses

    dead, survivor = fleet.daemons
    orphans = {cid for port, cid in created.values() if port == dead}
    killed_at = time.time()
    fleet.daemons[dead].kill()
    fleet.wait_kamailio_log(f"vidim daemon {fleet.uri(dead)} is down")
    assert dispatcher_states(fleet.kamailio)[fleet.uri(dead)].startswith("I")

    # The survivor adopts each of the dead daemon's conferences once its lease expired.
    def adopted() -> set[str]:
        lines = fleet.daemons[survivor].messages("adopted conference ")
        return {str(r["conference_id"]) for r in lines}

    deadline = time.monotonic() + 3 * LEASE_TTL + 5
    while adopted() != orphans:
        assert time.monotonic() < deadline, f"adopted {adopted()} of {orphans}"
        time.sleep(0.1)  # polling the survivor's log, bounded by the deadline
    for record in fleet.daemons[survivor].messages("adopted conference "):
        assert "(its lease expired)" in str(record["message"])
        assert _log_time(record) - killed_at < 2 * LEASE_TTL + 1, record

    since = len(crowd.ims)
    assert commands(crowd, fleet, requesters, "/end") == [202] * len(requesters)
    crowd.pump_until(
        lambda: len(crowd.ims_with(b"has ended", since)) >= len(requesters), "end notices"
    )

    # At the focus: one BYE per anchor; each anchor driven by one daemon at a time.
    focus_log = fleet.focus.records()
    anchors: dict[str, str] = {}  # requester -> anchor Call-ID
    for record in focus_log:
        if str(record["message"]).startswith("ConferenceCreated("):
            for requester in requesters:
                if f"'sip:{requester}@{DOMAIN}'" in str(record["message"]):
                    anchors[requester] = str(record["call_id"])
    assert sorted(anchors) == sorted(requesters)
    received = [r for r in focus_log if str(r["message"]).startswith("recv ")]
    for requester, call_id in anchors.items():
        creator, conference = created[requester]
        mine = [r for r in received if r.get("call_id") == call_id]
        byes = [r for r in mine if r.get("sip_method") == "BYE"]
        assert len(byes) == 1, f"{requester}: {len(byes)} BYEs"
        before = [r for r in mine if _log_time(r) < killed_at]
        assert {_peer_port(r) for r in before} == {creator}, f"{requester}: {before}"
        after = [r for r in mine if _log_time(r) >= killed_at + 0.05]
        assert {_peer_port(r) for r in after} <= {survivor}, f"{requester}: {after}"
        if creator == dead:
            assert _peer_port(byes[0]) == survivor

    # Each conference ended in exactly one daemon's log: the survivor's.
    for requester, (_, conference) in created.items():
        ends = {
            port: sum(
                1 for r in d.messages("ConferenceEnded(") if r.get("conference_id") == conference
            )
            for port, d in fleet.daemons.items()
        }
        assert ends == {dead: 0, survivor: 1}, f"{requester} ({conference}): {ends}"

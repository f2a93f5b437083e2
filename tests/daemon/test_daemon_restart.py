"""kill -9 and start again: no conference is lost (issue 16).

Real processes on loopback: the allocator daemon with its SQLite store, an
external focus (``vidim-daemon focus`` in its own process, which is not
killed), and this test as every requester and invitee (a UDP socket that
answers the IMs it gets).  Fifty conferences are set up, the allocator is
killed with SIGKILL and started again on the same store: each requester's
``/status`` is answered from the restored conference, and ``/end`` ends each
with a BYE to the focus on the anchor dialog made before the kill.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli import free_port

from vidim.sip import Request, Response, make_response, new_branch, new_tag, parse_message

CONFERENCES = 50
WAIT = 20.0


class Daemon:
    """One ``vidim-daemon`` process, in its own process group, logging JSON to a file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vidim_daemon", *argv, "--log-json", "--log-level", "debug"],
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_lines(self, prefix: str, count: int, timeout: float = WAIT) -> list[dict[str, object]]:
        """The log records starting with ``prefix``, once there are ``count`` (bounded wait).

        The daemon writes a line after the messages it is about are sent, so a
        peer can see the messages first: the log file is read until it has them.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if str(r["message"]).startswith(prefix)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        code = self.proc.wait(timeout=15)
        self._file.close()
        return code


@pytest.fixture
def processes() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.kill()


class People:
    """Every requester and invitee: one UDP socket; answers 200 to each IM it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.responses: list[Response] = []
        self.ims: list[Request] = []

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

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
                self.responses.append(message)
            else:
                self.ims.append(message)
                self.sock.sendto(make_response(message, 200, to_tag=new_tag()).to_bytes(), source)

    def final(self, call_id: str) -> Response | None:
        return next((r for r in self.responses if r.call_id == call_id and r.status >= 200), None)

    def close(self) -> None:
        self.sock.close()


def message(people: People, requester: str, uri: str, body: str = "", mode: str = "") -> Request:
    """A MESSAGE from ``requester``: the header form when ``mode`` is given, else a command."""
    return Request(
        "MESSAGE",
        uri,
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{people.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{requester}@localhost>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_tag()),
            ("CSeq", "1 MESSAGE"),
            *([("X-Vidim-Mode", mode)] if mode else [("Content-Type", "text/plain")]),
        ],
        body.encode(),
    )


def ask_all(people: People, port: int, requests: list[Request]) -> list[Response]:
    """Send each request, as a UAC does over UDP: again every 0.5 s until it is answered."""
    deadline = time.monotonic() + WAIT
    while True:
        waiting = [r for r in requests if people.final(r.call_id) is None]
        if not waiting:
            return [people.final(r.call_id) for r in requests]  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(waiting)} of {len(requests)} requests unanswered")
        for request in waiting:
            people.send(request.to_bytes(), port)
        again = time.monotonic() + 0.5

        def answered_or_due(again: float = again, waiting: list[Request] = waiting) -> bool:
            return time.monotonic() > again or all(
                people.final(r.call_id) is not None for r in waiting
            )

        people.pump_until(answered_or_due, "answers")


def wait_ready(port: int) -> None:
    """Until the daemon answers an OPTIONS (it binds after loading its store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            options = Request(
                "OPTIONS",
                f"sip:127.0.0.1:{port}",
                [
                    ("Via", f"SIP/2.0/UDP 127.0.0.1:1;branch={new_branch()};rport"),
                    ("Max-Forwards", "70"),
                    ("From", f"<sip:probe@localhost>;tag={new_tag()}"),
                    ("To", "<sip:vidim@localhost>"),
                    ("Call-ID", new_tag()),
                    ("CSeq", "1 OPTIONS"),
                ],
                b"",
            )
            sock.sendto(options.to_bytes(), ("127.0.0.1", port))
            try:
                sock.recvfrom(65535)
                return
            except TimeoutError:
                continue
    raise AssertionError(f"nothing answers on port {port}")


def test_kill_9_with_50_live_conferences_then_restart_loses_none(
    tmp_path: Path, processes: list[Daemon]
) -> None:
    focus_port, port = free_port(), free_port()
    store = f"sqlite:{tmp_path / 'state' / 'vidim.sqlite3'}"
    focus = Daemon(
        ["focus", "--focus-listen", f"127.0.0.1:{focus_port}", "--store", "memory:"],
        tmp_path / "focus.log",
    )
    processes.append(focus)
    allocator_argv = [
        "run",
        "--listen", f"127.0.0.1:{port}",
        "--focus", f"sip:conference-factory@127.0.0.1:{focus_port}",
        "--store", store,
        "--no-probe",
    ]  # fmt: skip
    allocator = Daemon(allocator_argv, tmp_path / "allocator.log")
    processes.append(allocator)
    wait_ready(focus_port)
    wait_ready(port)
    people = People()
    try:
        requesters = [f"alice{i}" for i in range(CONFERENCES)]
        # Each invites bob, who is this test too (his URI names its socket).
        bob = f"sip:bob@127.0.0.1:{people.port}"
        accepted = ask_all(
            people, port, [message(people, r, bob, mode="video") for r in requesters]
        )
        assert [a.status for a in accepted] == [202] * CONFERENCES
        # Each conference is up when its invitee has its invitation.
        people.pump_until(lambda: len(people.ims) >= 2 * CONFERENCES, "invitations")

        assert allocator.kill(signal.SIGKILL) == -signal.SIGKILL
        allocator = Daemon(allocator_argv, tmp_path / "allocator-2.log")
        processes.append(allocator)
        wait_ready(port)
        (restored,) = [r for r in allocator.records() if "restored from" in str(r["message"])]
        assert str(restored["message"]).startswith(f"{CONFERENCES} conference(s) restored")

        ims_before = len(people.ims)
        service = "sip:vidim@localhost"
        statuses = ask_all(
            people, port, [message(people, r, service, "/status") for r in requesters]
        )
        assert [s.status for s in statuses] == [202] * CONFERENCES
        people.pump_until(lambda: len(people.ims) >= ims_before + CONFERENCES, "status IMs")
        status_texts = [im.body.decode() for im in people.ims[ims_before:]]
        assert len(status_texts) == CONFERENCES
        assert all(
            text.startswith("Conference #") and "(video), active" in text for text in status_texts
        ), status_texts

        ims_before = len(people.ims)
        ended = ask_all(people, port, [message(people, r, service, "/end") for r in requesters])
        assert [e.status for e in ended] == [202] * CONFERENCES

        def end_notices() -> int:
            return sum(1 for im in people.ims[ims_before:] if b"has ended" in im.body)

        # The requester hears of the end once the focus has answered the anchor's BYE.
        people.pump_until(lambda: end_notices() >= CONFERENCES, "end notices")
        assert end_notices() == CONFERENCES
        assert len(focus.wait_lines("recv BYE", CONFERENCES)) == CONFERENCES
        # On the anchor dialogs made before the kill: the focus ended its conferences.
        assert len(focus.wait_lines("ConferenceEnded", CONFERENCES)) == CONFERENCES
        assert len(allocator.wait_lines("ConferenceEnded", CONFERENCES)) == CONFERENCES
    finally:
        people.close()

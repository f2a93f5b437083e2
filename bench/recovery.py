"""Recovery time after kill -9: from the kill to the first ``/status`` answered again.

Issue 16: a daemon killed with SIGKILL and started again on the same store
loses no conference.  This script measures how long the conferences are out of
reach, all on 127.0.0.1 with real processes:

* **Status**: ``vidim-daemon run`` (allocator only) with an external focus, a
  ``vidim-daemon focus`` process that is never killed, and this script as every
  requester and invitee (one UDP socket answering each IM 200).  With 0, 50 and
  1000 live conferences on the store (SQLite in a state directory, and Redis),
  the allocator is killed with SIGKILL and started at once with the same
  arguments; one requester sends ``/status`` every 20 ms from the kill on, and
  the time counted ends when the **status IM** naming its restored conference
  arrives (a 202 alone is not enough; with 0 conferences, the IM saying there is
  none).  Each kill and restart is repeated (``--repeat``) on the same
  conferences; the daemon's JSON log gives, from the same kill, when the records
  were restored and when it listened.
* **Media gap**: ``vidim-daemon run`` with the built-in focus and two RTP
  endpoints (UDP sockets in this script) in one audio conference, bob sending a
  packet every 5 ms; the daemon is killed and started at once on the same store
  and ports: the gap is from the kill to the first packet carol receives through
  the re-bound relay.
* **References, same run**: Kamailio started (a minimal config) until it
  answers OPTIONS, and a bare ``python -c pass``: the floor of a Python daemon's
  start.

The daemon runs as ``python -m vidim_daemon`` with this process's environment
(``PYTHONPATH`` chooses the tree).  Everything waits on bounded deadlines.

    .venv/bin/python bench/recovery.py                              # the table
    .venv/bin/python bench/recovery.py --write docs/performance.md  # and record it
    .venv/bin/python bench/recovery.py --quick                      # smoke: seconds
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
from doc_section import replace_section  # noqa: E402 - bench/doc_section.py
from vidim.sip import (  # noqa: E402 - after the path set-up above
    Request,
    Response,
    SIPParseError,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)

HOST = "127.0.0.1"
RESULTS_BEGIN = "<!-- bench/recovery.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/recovery.py results: end -->"
DEFAULT_COUNTS = (0, 50, 1000)
DEFAULT_REPEAT = 3
WAIT = 60.0  # seconds any one step may take before the run is abandoned
STATUS_EVERY = 0.02  # seconds between two /status while waiting for the daemon
RTP_EVERY = 0.005  # seconds between two of bob's RTP packets
BATCH = 50  # conferences set up at a time (then their answers are awaited)
SERVICE = "sip:vidim@localhost"
#: The allocator's start-up line saying how many conferences came back ("resumed"
#: with a shared store, where it takes their leases).
RESTORED = r"^\d+ conference\(s\) (restored|resumed) from"
KAMAILIO_CFG = """#!KAMAILIO
# bench/recovery.py: answers OPTIONS, nothing else.
debug=1
log_stderror=yes
children=1
disable_tcp=yes
auto_aliases=no
listen=udp:{host}:{port}
loadmodule "sl.so"
loadmodule "textops.so"
request_route {{
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


# ------------------------------------------------------------------ processes, ports
def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (the daemon binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def require(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (scripts/setup installs it)")
    return path


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own session, SIGKILL after 10 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def log_time(record: dict[str, object]) -> float:
    """A daemon JSON log record's time (``...T07:41:02.123Z``) as a Unix time."""
    stamp = str(record["time"]).removesuffix("Z")
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


class Daemon:
    """One ``python -m vidim_daemon`` process, JSON log to a file of its own."""

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vidim_daemon", *argv, "--log-json"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def logged(self, pattern: str) -> dict[str, object] | None:
        """The first log record whose message matches ``pattern`` (``re.search``)."""
        found = re.compile(pattern).search
        return next((r for r in self.records() if found(str(r.get("message")))), None)

    def wait_log(self, pattern: str, timeout: float = WAIT) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while (record := self.logged(pattern)) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"no log line matching {pattern!r} from the daemon:\n{tail}")
            time.sleep(0.02)  # polling a file, bounded by the deadline
        return record

    def kill(self) -> float:
        """SIGKILL to the process group; the time of the kill (Unix time)."""
        killed = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return killed

    def stop(self) -> None:
        stop_group(self.proc)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server on a free loopback port (no persistence); yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [require("redis-server"), "--port", str(port), "--bind", HOST, "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)  # polling the port, bounded by the deadline
        yield f"redis://{HOST}:{port}/0"
    finally:
        stop_group(proc)


def options_answered(port: int, timeout: float) -> bool:
    """One OPTIONS to 127.0.0.1:``port``; True when a 200 comes back in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        request = Request(
            "OPTIONS",
            f"sip:{HOST}:{port}",
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{sock.getsockname()[1]};branch={new_branch()}"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:ping@{HOST}>;tag={new_tag()}"),
                ("To", f"<sip:{HOST}:{port}>"),
                ("Call-ID", new_tag()),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        sock.sendto(request.to_bytes(), (HOST, port))
        sock.settimeout(timeout)
        try:
            return sock.recv(65535).startswith(b"SIP/2.0 200")
        except OSError:  # no answer, or ICMP port unreachable
            return False


def kamailio_start(workdir: Path) -> float:
    """Seconds from starting Kamailio to its first 200 to OPTIONS."""
    port = free_port()
    rundir = workdir / f"kamailio-{port}"
    rundir.mkdir(parents=True)
    cfg = rundir / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(host=HOST, port=port))
    argv = [require("kamailio"), "-f", str(cfg), "-DD", "-E", "-Y", str(rundir),
            "-P", str(rundir / "kamailio.pid"), "-w", str(rundir),
            "-m", "64", "-M", "8"]  # fmt: skip
    started = time.monotonic()
    with (rundir / "kamailio.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        while not options_answered(port, 0.005):
            if proc.poll() is not None or time.monotonic() - started > WAIT:
                raise RuntimeError(f"Kamailio did not start: {rundir / 'kamailio.log'}")
        return time.monotonic() - started
    finally:
        stop_group(proc)


def python_start(code: str = "pass") -> float:
    """Seconds ``python -c CODE`` takes (``pass``: the floor of any Python daemon's start)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.monotonic() - started


# ------------------------------------------------------------------ the SIP peer
class Peer:
    """Every requester and invitee: one UDP socket, read by a thread.

    Answers each request 200 (a re-INVITE with the SDP it offered on that
    call), ACKs each 2xx to its INVITEs, and keeps the final answers and the
    IMs it gets, which the caller waits on with :meth:`wait`.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((HOST, 0))
        self.port = int(self.sock.getsockname()[1])
        self.answers: dict[str, Response] = {}
        self.answered_at: dict[str, float] = {}  # Call-ID -> arrival of its final answer
        self.ims: list[tuple[float, Request]] = []  # (arrival, MESSAGE)
        self.offers: dict[str, bytes] = {}  # Call-ID -> our SDP
        self.cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stopped:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                continue  # ICMP for an earlier send (a daemon not yet listening)
            arrived = time.time()
            try:
                message = parse_message(data)
            except SIPParseError:
                continue
            with self.cond:
                self._handle(message, addr, arrived)
                self.cond.notify_all()

    def _handle(self, message: Request | Response, addr: tuple[str, int], arrived: float) -> None:
        if isinstance(message, Response):
            if message.status >= 200:
                self.answers.setdefault(message.call_id, message)
                self.answered_at.setdefault(message.call_id, arrived)
                if message.cseq.method == "INVITE" and message.status < 300:
                    self._ack(message, addr)
            return
        if message.method == "ACK":
            return
        if message.method == "MESSAGE":
            self.ims.append((arrived, message))
        sdp = self.offers.get(message.call_id) if message.method == "INVITE" else None
        headers = [("Content-Type", "application/sdp")] if sdp else []
        response = make_response(message, 200, to_tag=new_tag(), headers=headers, body=sdp or b"")
        self.sock.sendto(response.to_bytes(), addr)

    def _ack(self, ok: Response, addr: tuple[str, int]) -> None:
        contact = ok.headers.get("Contact") or ""
        target = contact[contact.find("<") + 1 : contact.find(">")]
        ack = Request(
            "ACK",
            target,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", ok.headers.get("From") or ""),
                ("To", ok.headers.get("To") or ""),
                ("Call-ID", ok.call_id),
                ("CSeq", f"{ok.cseq.seq} ACK"),
            ],
        )
        self.sock.sendto(ack.to_bytes(), addr)

    def send(self, request: Request, port: int) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(request.to_bytes(), (HOST, port))

    def wait(self, done: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"no {what} within {timeout} s")
                self.cond.wait(remaining)

    def message(
        self, user: str, uri: str, body: str = "", *, mode: str = "", invite: Sequence[str] = ()
    ) -> Request:
        """A MESSAGE from ``user``: the header form with ``mode`` (and more invitees
        than ``uri``), else a command (``body``)."""
        headers = [
            ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@localhost>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_tag() + new_tag()),
            ("CSeq", "1 MESSAGE"),
        ]
        if mode:
            headers.append(("X-Vidim-Mode", mode))
            headers += [("X-Vidim-Invite", f"<{invitee}>") for invitee in invite]
        else:
            headers.append(("Content-Type", "text/plain"))
        return Request("MESSAGE", uri, headers, body.encode())

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=2)
        self.sock.close()


def set_up(peer: Peer, port: int, users: Sequence[str], invitee: str) -> None:
    """A video conference per user, BATCH at a time, each answered 202.

    A 503 (the daemon's overload control, a burst being larger than it takes
    at once) is sent again a moment later, as a requester would.
    """
    waiting = list(users)
    deadline = time.monotonic() + WAIT
    while waiting:
        batch = [peer.message(user, invitee, mode="video") for user in waiting[:BATCH]]
        for request in batch:
            peer.send(request, port)
        peer.wait(lambda: all(r.call_id in peer.answers for r in batch), "answers")  # noqa: B023
        statuses = {r.from_addr.uri.user: peer.answers[r.call_id].status for r in batch}  # type: ignore[union-attr]
        if set(statuses.values()) - {202, 503}:
            raise RuntimeError(f"conferences refused: {statuses}")
        accepted = {user for user, status in statuses.items() if status == 202}
        waiting = [user for user in waiting if user not in accepted]
        if len(accepted) < len(batch):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} conferences still refused after {WAIT} s")
            time.sleep(0.2)  # pacing: the refused ones go again after the overload


# ------------------------------------------------------------------ status recovery
@dataclass
class StatusRun:
    """One store and conference count: every kill-and-restart of it."""

    store: str
    conferences: int
    to_status: list[float] = field(default_factory=list)  # kill -> status IM, seconds
    to_restored: list[float] = field(default_factory=list)  # kill -> "restored" log line
    to_listening: list[float] = field(default_factory=list)  # kill -> "listening" log line
    restored: list[int] = field(default_factory=list)  # conferences the restart found
    refused: list[int] = field(default_factory=list)  # /status answered 503 before that


def first_status_after(
    peer: Peer, port: int, user: str, killed: float, sent: list[str]
) -> tuple[float, int]:
    """Send ``/status`` every STATUS_EVERY s until it is answered: when the answer
    came, and how many of those ``/status`` got 503 (overload) first.

    The answer is the status IM to ``user`` of its conference, arrived after the
    kill; for a user with none, the 404 "no live conference of yours" to the
    ``/status``.  ``sent`` gets the Call-ID of each ``/status``.
    """
    deadline = time.monotonic() + WAIT
    while True:
        status = peer.message(user, SERVICE, "/status")
        sent.append(status.call_id)
        peer.send(status, port)
        with peer.cond:
            answers = [peer.answers[c] for c in sent if c in peer.answers]
            refusals = sum(1 for answer in answers if answer.status == 503)
            for arrived, im in reversed(peer.ims):
                if arrived <= killed:
                    break
                if im.to_addr.uri.user == user and im.body.startswith(b"Conference #"):  # type: ignore[union-attr]
                    return arrived, refusals
            none = [peer.answered_at[a.call_id] for a in answers if a.status == 404]
            if none:
                return min(none), refusals
            peer.cond.wait(STATUS_EVERY)
        if time.monotonic() > deadline:
            raise RuntimeError(f"no status IM within {WAIT} s")


def status_recovery(workdir: Path, store: str, label: str, count: int, repeat: int) -> StatusRun:
    workdir.mkdir(parents=True)
    focus_port, port = free_port(), free_port()
    run = StatusRun(label, count)
    focus = Daemon(["focus", "--focus-listen", f"{HOST}:{focus_port}", "--store", "memory:"],
                   workdir / "focus.log")  # fmt: skip
    argv = ["run", "--listen", f"{HOST}:{port}",
            "--focus", f"sip:conference-factory@{HOST}:{focus_port}",
            "--store", store, "--no-probe"]  # fmt: skip
    daemon = Daemon(argv, workdir / "daemon-0.log")
    peer = Peer()
    try:
        for p in (focus_port, port):
            deadline = time.monotonic() + WAIT
            while not options_answered(p, 0.2):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing answers on {p}")
        users = [f"alice{i}" for i in range(max(count, 1))]
        set_up(peer, port, users[:count], f"sip:bob@{HOST}:{peer.port}")
        # Each conference is up when the requester has its "ready" notice (and bob his invitation).
        peer.wait(lambda: len(peer.ims) >= 2 * count, f"{count} conferences up")
        for attempt in range(1, repeat + 1):
            killed = daemon.kill()
            daemon = Daemon(argv, workdir / f"daemon-{attempt}.log")
            # Another requester each round (with more conferences than rounds): a status
            # IM of the last round, arriving late, is not this one's.
            sent: list[str] = []
            user = users[attempt % len(users)]
            answered, refusals = first_status_after(peer, port, user, killed, sent)
            run.to_status.append(answered - killed)
            run.refused.append(refusals)
            restored = daemon.wait_log(RESTORED)
            listening = daemon.wait_log("vidim-daemon ")
            run.to_restored.append(log_time(restored) - killed)
            run.to_listening.append(log_time(listening) - killed)
            run.restored.append(int(str(restored["message"]).split(" ", 1)[0]))
    finally:
        daemon.stop()
        focus.stop()
        peer.close()
    return run


# ------------------------------------------------------------------ media gap
@dataclass
class MediaRun:
    gaps: list[float] = field(default_factory=list)  # kill -> first packet forwarded again
    to_listening: list[float] = field(default_factory=list)  # kill -> "listening" log line


SDP_OFFER = (
    "v=0\r\no={user} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


def join(peer: Peer, user: str, conference: str, rtp_port: int) -> int:
    """``user`` calls the conference URI (with its key); the focus's RTP port for it."""
    call_id = new_tag() + new_tag()
    sdp = SDP_OFFER.format(user=user, host=HOST, port=rtp_port).encode()
    peer.offers[call_id] = sdp
    uri = conference.split(";", 1)[0]
    invite = Request(
        "INVITE",
        conference,
        [
            ("Via", f"SIP/2.0/UDP {HOST}:{peer.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{HOST}:{peer.port}>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:{user}@{HOST}:{peer.port}>"),
            ("Content-Type", "application/sdp"),
        ],
        sdp,
    )
    host_port = uri.rsplit("@", 1)[1]
    peer.send(invite, int(host_port.rsplit(":", 1)[1]))
    peer.wait(lambda: call_id in peer.answers, f"{user}'s 200")
    answer = peer.answers[call_id]
    found = re.search(rb"m=audio (\d+)", answer.body)
    if answer.status != 200 or found is None:
        raise RuntimeError(f"{user} not admitted: {answer.status} {answer.reason}")
    return int(found.group(1))


class RtpSender(threading.Thread):
    """bob: a packet every RTP_EVERY seconds to the focus's port, until stopped."""

    def __init__(self, sock: socket.socket, port: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.port = sock, port
        self.stopped = threading.Event()

    def run(self) -> None:
        sequence = 0
        while not self.stopped.wait(RTP_EVERY):
            sequence = (sequence + 1) % 65536
            packet = b"\x80\x00" + sequence.to_bytes(2, "big") + bytes(8) + bytes(160)
            with contextlib.suppress(OSError):  # ICMP while the relay's port is closed
                self.sock.sendto(packet, (HOST, self.port))


def receive_until(sock: socket.socket, deadline: float, stop: Callable[[float], bool]) -> float:
    """Read carol's packets until ``stop(arrival)``; the last arrival time."""
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.recv(2048)
        except TimeoutError:
            raise RuntimeError("no RTP through the focus") from None
        except OSError:
            continue
        arrived = time.time()
        if stop(arrived):
            return arrived


def later_than(moment: float) -> Callable[[float], bool]:
    return lambda arrival: arrival > moment


def media_gap(workdir: Path, repeat: int) -> MediaRun:
    workdir.mkdir(parents=True)
    port, focus_port = free_port(), free_port()
    argv = ["run", "--listen", f"{HOST}:{port}", "--focus-listen", f"{HOST}:{focus_port}",
            "--store", f"sqlite:{workdir / 'state' / 'vidim.sqlite3'}", "--no-probe"]  # fmt: skip
    daemon = Daemon(argv, workdir / "daemon-0.log")
    peer = Peer()
    bob_rtp, carol_rtp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    sender: RtpSender | None = None
    run = MediaRun()
    try:
        for sock in (bob_rtp, carol_rtp):
            sock.bind((HOST, 0))
        deadline = time.monotonic() + WAIT
        while not options_answered(port, 0.2):
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon does not answer")
        bob, carol = (f"sip:{name}@{HOST}:{peer.port}" for name in ("bob", "carol"))
        peer.send(peer.message("alice", bob, mode="audio", invite=[carol]), port)
        peer.wait(lambda: len(peer.ims) >= 3, "the invitations")

        def conference_of(user: str) -> str:
            im = next(m for _, m in peer.ims if (m.to_addr.uri.user or "") == user)  # type: ignore[union-attr]
            value = im.headers.get("X-Vidim-Conference") or ""
            return value[value.find("<") + 1 : value.find(">")]

        bob_focus = join(peer, "bob", conference_of("bob"), bob_rtp.getsockname()[1])
        join(peer, "carol", conference_of("carol"), carol_rtp.getsockname()[1])
        sender = RtpSender(bob_rtp, bob_focus)
        sender.start()
        receive_until(carol_rtp, time.monotonic() + 10, lambda _: True)  # media flows
        for attempt in range(1, repeat + 1):
            # Kill just after a packet got through; the restart is immediate.
            receive_until(carol_rtp, time.monotonic() + 10, lambda _: True)
            killed = daemon.kill()
            daemon = Daemon(argv, workdir / f"daemon-{attempt}.log")
            first = receive_until(carol_rtp, time.monotonic() + WAIT, later_than(killed))
            run.gaps.append(first - killed)
            run.to_listening.append(log_time(daemon.wait_log("vidim-daemon ")) - killed)
    finally:
        if sender is not None:
            sender.stopped.set()
        daemon.stop()
        peer.close()
        bob_rtp.close()
        carol_rtp.close()
    return run


# ------------------------------------------------------------------ the report
def ms(values: Sequence[float]) -> str:
    """Median (min-max) in milliseconds."""
    if not values:
        return "-"
    median = statistics.median(values) * 1000
    if len(values) == 1:
        return f"{median:,.0f} ms"
    return f"{median:,.0f} ms ({min(values) * 1000:,.0f}-{max(values) * 1000:,.0f})"


def status_row(run: StatusRun) -> str:
    restored = "/".join(f"{n:,}" for n in sorted(set(run.restored)))
    return (
        f"| {run.store} | {run.conferences:,} | {ms(run.to_status)} | "
        f"{ms(run.to_restored)} | {ms(run.to_listening)} | {restored} | "
        f"{sum(run.refused)} |"
    )


@dataclass
class References:
    """Start times measured in the same run, to compare the restart with."""

    kamailio: float  # Kamailio started -> its first 200 to OPTIONS
    python: float  # python -c pass
    imports: float  # python -c 'import vidim_daemon.cli': the daemon's own imports


def references(workdir: Path) -> References:
    return References(
        kamailio=statistics.median(kamailio_start(workdir / f"k{i}") for i in range(3)),
        python=statistics.median(python_start() for _ in range(3)),
        imports=statistics.median(python_start("import vidim_daemon.cli") for _ in range(3)),
    )


def report(runs: Sequence[StatusRun], media: MediaRun | None, refs: References, repeat: int) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    lines = [
        f"Measured {stamp}, commit {commit}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {load:.1f} at the end (a shared "
        f"machine), `bench/recovery.py` ({repeat} kill -9 and restart per row on the same "
        "conferences; median, and min-max).",
        "",
        "| store | live conferences | kill -> first `/status` answered (its IM) "
        "| kill -> records restored (log) | kill -> listening (log) | restored "
        "| `/status` refused 503 meanwhile (overload) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [status_row(run) for run in runs]
    title = (
        f"media on the built-in focus (SQLite, 2 RTP endpoints, 1 packet / "
        f"{RTP_EVERY * 1000:.0f} ms)"
        if media is not None
        else "references"
    )
    lines += ["", f"| {title} | |", "|---|---:|"]
    if media is not None:
        lines += [
            f"| kill -> first RTP packet forwarded after the restart | {ms(media.gaps)} |",
            f"| kill -> the restarted daemon listening (log) | {ms(media.to_listening)} |",
        ]
    lines += [
        f"| reference: Kamailio 5.6 start -> first 200 to OPTIONS | {ms([refs.kamailio])} |",
        f"| reference: `python -c pass` | {ms([refs.python])} |",
        f"| reference: `python -c 'import vidim_daemon.cli'` | {ms([refs.imports])} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, metavar="DOC", help="rewrite this doc's section")
    parser.add_argument("--quick", action="store_true", help="a smoke: 0 and 5, SQLite, once")
    parser.add_argument("--counts", type=int, nargs="+", default=list(DEFAULT_COUNTS))
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--no-redis", action="store_true", help="SQLite only")
    parser.add_argument("--no-media", action="store_true", help="skip the media gap")
    args = parser.parse_args(argv)
    counts, repeat = ([0, 5], 1) if args.quick else (args.counts, args.repeat)
    with tempfile.TemporaryDirectory(prefix="vidim-recovery-") as tmp:
        workdir = Path(tmp)
        refs = references(workdir)
        runs = []
        for count in counts:
            store = f"sqlite:{workdir / f'sqlite-{count}' / 'state' / 'vidim.sqlite3'}"
            runs.append(
                status_recovery(workdir / f"sqlite-{count}", store, "SQLite", count, repeat)
            )
            print(status_row(runs[-1]), flush=True)
        if not (args.quick or args.no_redis):
            for count in counts:
                with redis_server(workdir) as url:
                    runs.append(
                        status_recovery(workdir / f"redis-{count}", url, "Redis", count, repeat)
                    )
                print(status_row(runs[-1]), flush=True)
        media = None if args.no_media else media_gap(workdir / "media", repeat)
    text = report(runs, media, refs, repeat)
    print(text)
    if args.write is not None:
        replace_section(args.write, RESULTS_BEGIN, RESULTS_END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

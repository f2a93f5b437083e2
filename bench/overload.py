"""Overload: does every request get 202 or 503 up to 3x the daemon's capacity? (issue 18)

A Python UDP sender offers header-form MESSAGEs (a new requester each, no
retransmission: a request the daemon never read stays unanswered) to
``vidim-daemon`` at 1x, 2x and 3x its capacity for a few seconds each, and
counts the requests answered 202, 503 (overload control refusing) and not at
all.  The daemon's INVITEs and IMs go to SIPp (``bench/sipp/focus.xml`` and
``invitee.xml``), as in bench/setups.py; the daemon is restarted for each step
(and killed after it).

Capacity is measured first, as the requests one CPU second of the daemon answers
202 at a load it takes (``--calibrate-rate``, 600/s, for ``--calibrate-seconds``):
how many a second the daemon can answer with a whole core, without counting the
time this shared machine gives other jobs; or given (``--capacity``).  (Neither a
flood, during which the daemon, refusing, answers nearly everything 503, nor the
highest rate fully answered 202, which a stall of the machine caps at random, is a
steady measure of it.)

Why requests went unanswered is read from the kernel: the drops of the daemon's
own UDP socket (``/proc/net/udp``: its receive buffer was full) and of the
sender's.  The daemon asks for a 4 MiB receive buffer (``SO_RCVBUF``), which
Linux caps at ``net.core.rmem_max`` (212,992 bytes on a stock Debian 12, and
global to the machine: not changed here); the script reads that cap, and with
``--buffers`` runs the steps again with the daemon asking for less, which is
what a capped request gets: ``--buffers 0,212992`` = the daemon's own request,
then a stock Debian's cap.

    .venv/bin/python bench/overload.py                              # the table
    .venv/bin/python bench/overload.py --write docs/performance.md  # and record it
    .venv/bin/python bench/overload.py --quick                      # smoke: seconds
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
import setups  # noqa: E402 - bench/setups.py: its SIPp peers, daemon config and probe MESSAGE
from doc_section import replace_section  # noqa: E402 - bench/doc_section.py

RESULTS_BEGIN = "<!-- bench/overload.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/overload.py results: end -->"
HOST = setups.HOST
#: Linux's SO_RCVBUFFORCE (the socket module does not name it): past rmem_max, as root.
SO_RCVBUFFORCE = 33
#: The sender's receive buffer: it must never be the one that drops an answer.
SENDER_BUFFER = 8 * 1024 * 1024
#: After the load: answers are awaited until none came for this long (seconds).
QUIET = 2.0
#: ... or this long at most.
SETTLE_MAX = 20.0
#: The call numbers of the load (the warm-up's are setups.PROBE_BASE + 500000 on).
LOAD_BASE = 1_000_000
#: Runs the daemon with another UDP buffer request (argv[1]): what a capped one gets.
DAEMON_LAUNCHER = """
import sys
from vidim.aio.server import SipServer
from vidim_daemon.cli import main
SipServer.__init__.__kwdefaults__["udp_buffer"] = int(sys.argv.pop(1))
main()
"""
_CALL_NUMBER = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*probe-(\d+)-", re.IGNORECASE)


# ------------------------------------------------------------------ the kernel's view


def rmem_max() -> int | None:
    """net.core.rmem_max: the largest SO_RCVBUF an unprivileged process may ask for."""
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return None


def socket_drops(port: int) -> int:
    """The drops of the UDP socket bound to 127.0.0.1:``port`` (/proc/net/udp's last column)."""
    suffix = f"0100007F:{port:04X}"
    for line in setups.read_text(Path("/proc/net/udp")).splitlines()[1:]:
        fields = line.split()
        if fields[1] == suffix:
            return int(fields[-1])
    return 0


def receive_buffer(port: int) -> int | None:
    """The receive buffer (bytes) the kernel gave the UDP socket on ``port`` (``ss -m``)."""
    try:
        out = subprocess.run(
            ["ss", "-u", "-l", "-n", "-m", f"sport = :{port}"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
    except OSError:
        return None
    found = re.search(r"\brb(\d+)", out)
    return int(found.group(1)) if found else None


# ------------------------------------------------------------------ the load


@dataclass
class Step:
    """One load step against a fresh daemon."""

    label: str
    offered_rate: int
    seconds: float
    #: The daemon's UDP receive buffer request (None: its own default) and what it got.
    asked: int | None = None
    granted: int | None = None
    sent: int = 0
    #: Final status -> requests answered with it (the first answer of each).
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    daemon_drops: int = 0
    sender_drops: int = 0
    answer_ms: list[float] = field(default_factory=list)
    #: The daemon's CPU seconds from the first request sent to the last answer.
    daemon_cpu_seconds: float = 0.0
    #: The daemon's CPU while the requests were sent, as a share of that time (100%: a core).
    daemon_cpu: float = 0.0
    #: The CPU of other processes (not the bench's) during the step, 100% = a core:
    #: the machine is shared.
    other_cpu: float = 0.0
    overload_warnings: int = 0

    @property
    def answered_202_per_cpu_second(self) -> float:
        return self.statuses[202] / self.daemon_cpu_seconds if self.daemon_cpu_seconds else 0.0


def sender_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SENDER_BUFFER)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < SENDER_BUFFER:
        with contextlib.suppress(OSError):  # the kernel capped it: as root, past the cap
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SENDER_BUFFER)
    sock.setblocking(False)
    return sock


def offer(step: Step, daemon_port: int, daemon_pid: int) -> None:
    """Send ``offered_rate`` MESSAGEs a second for ``seconds``, then wait for the answers."""
    total = round(step.offered_rate * step.seconds)
    sent_at: dict[int, float] = {}
    answered: dict[int, tuple[int, float]] = {}

    def read(sock: socket.socket) -> int:
        count = 0
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return count
            found = _CALL_NUMBER.search(data)
            if not data.startswith(b"SIP/2.0 ") or found is None:
                continue
            number, status = int(found.group(1)), int(data[8:11])
            if status >= 200 and number not in answered:
                answered[number] = (status, time.perf_counter())
                count += 1

    with sender_socket() as sock:
        local = sock.getsockname()[1]
        target = (HOST, daemon_port)
        start, cpu_start = time.perf_counter(), setups.cpu_seconds(daemon_pid)
        for index in range(total):
            due = start + index / step.offered_rate
            while (now := time.perf_counter()) < due:
                select.select([sock], [], [], due - now)
                read(sock)
            number = LOAD_BASE + index
            sent_at[number] = time.perf_counter()
            sock.sendto(setups.probe_message(number, local, daemon_port), target)
            read(sock)
        quiet_since = time.perf_counter()
        step.daemon_cpu = (setups.cpu_seconds(daemon_pid) - cpu_start) / (quiet_since - start) * 100
        deadline = quiet_since + SETTLE_MAX
        while len(answered) < total and time.perf_counter() < deadline:
            select.select([sock], [], [], 0.05)
            if read(sock):
                quiet_since = time.perf_counter()
            elif time.perf_counter() - quiet_since > QUIET:
                break
        step.sender_drops = socket_drops(local)
    step.sent = total
    step.statuses = Counter(status for status, _ in answered.values())
    step.unanswered = total - len(answered)
    step.answer_ms = [(at - sent_at[number]) * 1000 for number, (_, at) in answered.items()]


def start_daemon(workdir: Path, *, focus: int, proxy: int, asked: int | None) -> setups.Daemon:
    """vidim-daemon (this checkout's) with the bench's config, asking ``asked`` bytes of UDP
    receive buffer (None: its own default)."""
    port = setups.free_port()
    config = workdir / "vidim.toml"
    setups.daemon_config(config, listen=port, focus=focus, proxy=proxy, log_level="info")
    if asked is None:
        argv = [sys.executable, "-m", "vidim_daemon"]
    else:
        argv = [sys.executable, "-c", DAEMON_LAUNCHER, str(asked)]
    log_path = workdir / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*argv, "run", "--config", str(config)], cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        setups.wait_bound(proc, port, "vidim-daemon", log_path)
    except BaseException:
        setups.stop(proc)
        raise
    return setups.Daemon(proc=proc, port=port, log_path=log_path)


def run_step(workdir: Path, step: Step, warm_up: int) -> Step:
    """``step`` against a fresh daemon and fresh SIPp focus and invitees."""
    workdir.mkdir(parents=True, exist_ok=True)
    sipps: list[setups.Sipp] = []
    daemon: setups.Daemon | None = None
    try:
        invitees = setups.start_sipp("invitees", "invitee.xml", workdir)
        sipps.append(invitees)
        focus = setups.start_sipp("focus", "focus.xml", workdir)
        sipps.append(focus)
        daemon = start_daemon(workdir, focus=focus.port, proxy=invitees.port, asked=step.asked)
        step.granted = receive_buffer(daemon.port)
        setups.warm_up(daemon.port, warm_up)
        drops = socket_drops(daemon.port)
        cpu, others, wall = (
            setups.cpu_seconds(daemon.proc.pid),
            setups.all_cpu_seconds(),
            time.monotonic(),
        )
        offer(step, daemon.port, daemon.proc.pid)
        step.daemon_cpu_seconds = setups.cpu_seconds(daemon.proc.pid) - cpu
        ours = {os.getpid(), daemon.proc.pid, *(sipp.proc.pid for sipp in sipps)}
        step.other_cpu = (
            setups.background_cpu(others, setups.all_cpu_seconds(), ours)
            / (time.monotonic() - wall)
            * 100
        )
        step.daemon_drops = socket_drops(daemon.port) - drops
    finally:
        for sipp in sipps:
            setups.stop_sipp(sipp)
        if daemon is not None:
            # Killed: a graceful stop would end every conference first (seconds of
            # BYEs and drain that measure nothing here).
            setups.stop(daemon.proc, signal.SIGKILL)
    if daemon is not None:
        step.overload_warnings = setups.read_text(daemon.log_path).count("overloaded (")
    return step


# ------------------------------------------------------------------ the report


def _kib(value: int | None) -> str:
    return "-" if value is None else f"{value // 1024:,} KiB"


def format_row(step: Step, capacity: float) -> str:
    p99 = setups.percentile(step.answer_ms, 0.99)
    other = step.sent - step.unanswered - step.statuses[202] - step.statuses[503]
    cells = [
        "default (4 MiB)" if step.asked is None else f"{step.asked:,} B",
        _kib(step.granted),
        step.label,
        f"{step.offered_rate:,}",
        f"{step.offered_rate / capacity:.1f}x",
        f"{step.sent:,}",
        f"{step.statuses[202]:,}",
        f"{step.statuses[503]:,}",
        f"{other:,}",
        f"**{step.unanswered:,}**" if step.unanswered else "0",
        f"{step.daemon_drops:,}",
        f"{step.sender_drops:,}",
        "-" if p99 is None else f"{p99:.0f}",
        f"{step.daemon_cpu:.0f}%",
        f"{step.other_cpu:.0f}%",
    ]
    return "| " + " | ".join(cells) + " |"


def capacity_line(calibration: Step | None, capacity: float) -> str:
    if calibration is None:
        return f"- capacity: {capacity:,.0f} requests/s (given)"
    return (
        f"- capacity: {capacity:,.0f} requests/s answered 202 per CPU second of the daemon"
        f" (measured at {calibration.offered_rate:,}/s for {calibration.seconds:g} s:"
        f" {calibration.statuses[202]:,} got 202, {calibration.statuses[503]:,} got 503,"
        f" {calibration.unanswered:,} none, {calibration.daemon_cpu_seconds:.2f} CPU s)"
    )


def format_report(
    calibration: Step | None, steps: Sequence[Step], capacity: float, command: str,
    cap: int | None,
) -> str:  # fmt: skip
    lines = [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {setups.machine()}",
        f"- vidim: {setups.git_describe()}",
        f"- command: `{command}`",
        f"- net.core.rmem_max: {cap:,} bytes"
        if cap is not None
        else "- net.core.rmem_max: unknown",
        capacity_line(calibration, capacity),
        "",
        "| daemon asked | kernel gave | step | offered/s | x capacity | sent | 202 | 503 "
        "| other | unanswered | daemon socket drops | sender drops | answer p99 ms "
        "| daemon CPU while sent | other jobs' CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(format_row(step, capacity) for step in steps),
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multiples", default="1,2,3", help="offered rates, x capacity")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--capacity", type=float, help="requests/s the daemon answers 202")
    parser.add_argument("--calibrate-rate", type=int, default=600)
    parser.add_argument("--calibrate-seconds", type=float, default=4.0)
    parser.add_argument(
        "--buffers", default="0",
        help="the daemon's UDP receive buffer requests, bytes (0: its own default)",
    )  # fmt: skip
    parser.add_argument("--warm-up", type=int, default=setups.WARM_UP)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--write", type=Path, help="rewrite this doc's results section")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.step_seconds, args.calibrate_seconds, args.warm_up = 0.5, 0.5, 5
    return args


def run(args: argparse.Namespace, workdir: Path) -> tuple[Step | None, list[Step], float]:
    calibration: Step | None = None
    if args.capacity:
        capacity = float(args.capacity)
    else:
        calibration = Step("calibration", args.calibrate_rate, args.calibrate_seconds)
        run_step(workdir / "calibration", calibration, args.warm_up)
        capacity = calibration.answered_202_per_cpu_second
        print(capacity_line(calibration, capacity), file=sys.stderr, flush=True)
        if capacity <= 0:
            raise SystemExit(f"no 202 while calibrating: see {workdir / 'calibration'}")
    steps = []
    for buffer in (int(part) for part in args.buffers.split(",")):
        for multiple in (float(part) for part in args.multiples.split(",")):
            step = Step(
                f"{multiple:g}x", round(capacity * multiple), args.step_seconds,
                asked=buffer or None,
            )  # fmt: skip
            steps.append(run_step(workdir / f"b{buffer}x{multiple:g}", step, args.warm_up))
            print(format_row(step, capacity), file=sys.stderr, flush=True)
    return calibration, steps, capacity


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: every step's finally stops its daemon and SIPps.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python bench/overload.py" + "".join(
        f" {word}" for word in (sys.argv[1:] if argv is None else argv)
    )
    if args.workdir is not None:
        calibration, steps, capacity = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="vidim-overload-") as tmp:
            calibration, steps, capacity = run(args, Path(tmp))
    text = format_report(calibration, steps, capacity, command, rmem_max())
    print(text)
    if args.write is not None:
        replace_section(args.write, RESULTS_BEGIN, RESULTS_END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

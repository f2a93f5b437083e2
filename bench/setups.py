"""Conference setups per second of vidim-daemon under SIPp, beside Kamailio, in one run.

SIPp plays every peer, all on 127.0.0.1 (scenarios in ``bench/sipp/``):

* ``requester.xml`` sends header-form MESSAGEs to the daemon at a set rate
  (``X-Vidim-Mode: video``; invitees: the Request-URI's user and one
  ``X-Vidim-Invite``; a new requester per call) and expects 202;
* ``focus.xml`` is the focus (``--focus``, profile ``asterisk``): answers the
  INVITE with 200 and takes the ACK;
* ``invitee.xml`` answers every IM the daemon sends with 200: the daemon runs
  with ``proxy`` at it, so the two invitations and the "ready" notice of each
  setup all arrive there.

A setup is done when the requester got its 202, the focus got its ACK and both
invitations were answered; the three SIPp processes log each of these with the
call number of the requester (``-trace_logs``), and the script joins them.
Probing is off (``probe = false``) and the idle and keepalive timers are an hour
long, so the daemon does nothing else during a step.  The daemon is restarted
for each step (its CPU and peak RSS are per step).

Anchors in the same run: SIPp -> SIPp (``message_uac.xml`` -> ``message_uas.xml``)
and SIPp -> Kamailio (a minimal stateful ``t_relay`` config) -> SIPp, stepped
until the first step with a retransmission or failure.

Latency: every SIPp log line carries ``gettimeofday`` times (microseconds), so
MESSAGE -> 202 (requester) and MESSAGE -> INVITE (requester's send time, which
the daemon copies into the INVITE's ``X-Vidim-Participants``, against the
focus's receive time) are known per setup; they include SIPp's own scheduling
(up to about a millisecond).  The unloaded figure comes from a Python probe
instead: one MESSAGE at a time, Python sockets standing in for the focus and
the invitees, timed with ``time.perf_counter``.  During each load step the
probe also sends a few MESSAGEs per second and times their 202.

Several daemons (``--daemons 1,2,4``): for each count, that many daemons share one
redis-server (``store = "redis://..."``) behind Kamailio running the shipped
examples/kamailio/kamailio.cfg with ``WITH_DISPATCHER`` (round robin); the requester
sends to Kamailio, the daemons' INVITEs and IMs go straight to the SIPp focus and
invitees as above.  Each count is stepped up to its first unclean rate, beside
Kamailio's own clean MESSAGE relay rate measured in the same run; ``--write``
rewrites its own section (FLEET_BEGIN ... FLEET_END).

    .venv/bin/python bench/setups.py                              # the table
    .venv/bin/python bench/setups.py --write docs/performance.md  # and record it
    .venv/bin/python bench/setups.py --quick                      # smoke: a few seconds
    .venv/bin/python bench/setups.py --daemons 1,2,4 --write docs/performance.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
import host_stalls  # noqa: E402 - bench/host_stalls.py, beside this script
from doc_section import replace_section  # noqa: E402 - bench/doc_section.py

SIPP_DIR = ROOT / "bench" / "sipp"
HOST = "127.0.0.1"
RESULTS_BEGIN = "<!-- bench/setups.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/setups.py results: end -->"
FLEET_BEGIN = "<!-- bench/setups.py --daemons results: begin (rewritten by --write) -->"
FLEET_END = "<!-- bench/setups.py --daemons results: end -->"
EXAMPLE_KAMAILIO_CFG = ROOT / "examples" / "kamailio" / "kamailio.cfg"

# Targets of issue 5.
TARGET_RATIO = 0.5  # vidim clean setups/s over Kamailio's clean relay rate
TARGET_P99_MS = 10.0  # MESSAGE -> INVITE under load
TARGET_UNLOADED_P50_US = 300.0

#: Seconds the loaded probe goes on after a step's load stops (recovery after overload).
RECOVERY_SECONDS = 3.0
DEFAULT_RATES = (50, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200, 2400, 3000)
DEFAULT_KAMAILIO_RATES = (2000, 2500, 3000, 3500, 4000, 4500, 5000, 6000, 8000, 12000, 16000)
DEFAULT_DIRECT_RATES = (4000, 8000, 12000, 16000, 24000, 32000)
DEFAULT_FLEET_RATES = (200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2400, 2800)
SIPP_BUFFER = 4 * 1024 * 1024
PROBE_BASE = 9_000_000  # call numbers of the probe's setups (never reached by SIPp)
START_TIMEOUT = 10.0
WARM_UP = 50  # setups before each timed step
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The daemon's ``event_loop`` setting (``--event-loop``): auto, uvloop or asyncio.
EVENT_LOOP = "auto"
#: Extra ``[limits]`` settings for the daemon (``--limit KEY=VALUE``), as TOML lines.
LIMITS: list[str] = []
#: Whether load steps capture the loopback with tcpdump (``--no-capture``: not).
CAPTURE = True
#: The single daemon's state store (``--store``): its embedded default (SQLite in the
#: step's own directory, write-ahead of every change) or ``memory:`` (nothing stored).
STORE = ""


# ------------------------------------------------------------------ processes, ports


def free_port() -> int:
    """A port free on 127.0.0.1 for UDP and TCP (the daemon binds both)."""
    for _ in range(200):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind((HOST, 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP+TCP port on 127.0.0.1")


def udp_port_bound(port: int) -> bool:
    suffix = f":{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/udp") as table:
        next(table)
        for line in table:
            local = line.split()[1]
            if local.endswith(suffix) and local.split(":")[0] in ("0100007F", "00000000"):
                return True
    return False


def wait_bound(
    proc: subprocess.Popen[bytes], port: int, what: str, log: Path, timeout: float | None = None
) -> None:
    """Wait until ``proc`` has bound UDP ``port`` (START_TIMEOUT seconds, unless ``timeout``)."""
    limit = START_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if udp_port_bound(port):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{read_text(log)[-3000:]}")
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not bind UDP {HOST}:{port} in {limit}s")


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def require(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise SystemExit(f"{name} is not installed (scripts/setup test installs it)")
    return path


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 8.0) -> None:
    """Signal the process group led by ``proc``; SIGKILL it when it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime of every process in a process group (Kamailio's workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def all_cpu_seconds() -> dict[int, tuple[int, float]]:
    """pid -> (process group, utime + stime) of every process."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def background_cpu(
    before: dict[int, tuple[int, float]], after: dict[int, tuple[int, float]], ours: set[int]
) -> float:
    """CPU seconds used meanwhile by processes that are not the benchmark's (other jobs).

    ``ours`` holds process groups (every program is started in its own session) and
    this process's pid.
    """
    total = 0.0
    for pid, (pgid, cpu) in after.items():
        if pgid in ours or pid in ours:
            continue
        total += cpu - before.get(pid, (pgid, 0.0))[1]
    return total


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process (KiB), from /proc/PID/status."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def udp_receive_errors() -> int:
    """RcvbufErrors of /proc/net/snmp: datagrams dropped for a full socket buffer."""
    lines = [line.split() for line in read_text(Path("/proc/net/snmp")).splitlines()]
    for names, values in itertools.pairwise(lines):
        if names and names[0] == "Udp:" and values[0] == "Udp:" and "RcvbufErrors" in names:
            return int(values[names.index("RcvbufErrors")])
    return 0


# ------------------------------------------------------------------- wire capture


#: ``udp[8:4]`` (the first four payload octets) of a MESSAGE and of an INVITE.
_MESS, _INVI = 0x4D455353, 0x494E5649
#: The call number in the requester's user (req<n>x..., also in the daemon's INVITE)
#: and in the anchor's sender (sender<n>@, also in what Kamailio relays).
_CORRELATOR = re.compile(rb"req(\d+)x")
_ANCHOR_CORRELATOR = re.compile(rb"sender(\d+)@")


@dataclass
class WireCapture:
    """tcpdump on the loopback: each MESSAGE to the daemon and each INVITE it sends the focus.

    The capture stamps a datagram when it passes ``lo``, in the sender's system
    call: MESSAGE -> INVITE between two stamps is the daemon's own latency,
    queueing in its socket included, and neither SIPp's wake-ups nor its 1 ms
    clock (which the SIPp figures carry).
    """

    proc: subprocess.Popen[bytes]
    path: Path
    cpu_start: float = 0.0

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) - self.cpu_start


def daemon_filter(daemon_port: int, focus_port: int) -> str:
    """MESSAGEs to the daemon and the INVITEs it sends the focus."""
    return (
        f"udp and ((dst port {daemon_port} and udp[8:4] = {_MESS:#x}) or "
        f"(src port {daemon_port} and dst port {focus_port} and udp[8:4] = {_INVI:#x}))"
    )


def relay_filter(relay_port: int, uas_port: int) -> str:
    """MESSAGEs to Kamailio and the MESSAGEs it relays to the SIPp UAS."""
    return (
        f"udp and udp[8:4] = {_MESS:#x} and "
        f"(dst port {relay_port} or (src port {relay_port} and dst port {uas_port}))"
    )


def start_capture(workdir: Path, bpf: str) -> WireCapture | None:
    """tcpdump when it is installed and may capture here (root or CAP_NET_RAW); else None."""
    binary = shutil.which("tcpdump")
    if binary is None:
        return None
    path = workdir / "wire.pcap"
    proc = subprocess.Popen(
        [binary, "-i", "lo", "-n", "-s", "1500", "-B", "32768", "--time-stamp-precision=nano",
         "-w", str(path), bpf],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    # tcpdump says "listening on lo" once its filter is attached: wait for that line.
    ready, _, _ = select.select([proc.stderr], [], [], START_TIMEOUT)
    line = proc.stderr.readline() if ready else b""
    if b"listening on" not in line:
        stop(proc)
        (workdir / "tcpdump.err").write_bytes(line)
        return None
    return WireCapture(proc=proc, path=path, cpu_start=cpu_seconds(proc.pid))


def stop_capture(capture: WireCapture) -> None:
    """SIGINT: tcpdump writes out what it holds and exits."""
    stop(capture.proc, signal.SIGINT)
    if capture.proc.stderr is not None:
        capture.proc.stderr.close()


def read_pcap(path: Path) -> Iterable[tuple[float, int, bytes]]:
    """(stamp in seconds, UDP destination port, payload) per packet of a pcap (IPv4 over lo)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return
    (magic,) = struct.unpack_from("<I", data)
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise ValueError(f"{path}: not a little-endian pcap file")
    scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
    (link,) = struct.unpack_from("<I", data, 20)
    offset = {1: 14, 113: 16}.get(link, 0)  # Ethernet (lo), Linux cooked
    at = 24
    while at + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from("<IIII", data, at)
        packet = data[at + 16 : at + 16 + captured]
        at += 16 + captured
        ip = packet[offset:]
        if len(ip) < 28:
            continue
        header = (ip[0] & 0x0F) * 4
        (destination,) = struct.unpack_from(">H", ip, header + 2)
        yield seconds + fraction * scale, destination, ip[header + 8 :]


def wire_latencies_ms(
    path: Path, inbound_port: int | None = None, correlator: re.Pattern[bytes] = _CORRELATOR
) -> list[tuple[float, float]]:
    """Per call number, (stamp in, ms from the first datagram in to the first out), from a capture.

    The daemon's (``inbound_port`` None): MESSAGE -> INVITE of each SIPp setup, the
    loaded probe's left out.  A relay's: the MESSAGE sent to ``inbound_port`` -> the
    MESSAGE it forwards.  A retransmission keeps the first stamp.  The stamp (system
    clock, seconds) places the datagram beside the host's stalls (bench/host_stalls.py).
    """
    sent: dict[int, float] = {}
    out: dict[int, float] = {}
    for stamp, destination, payload in read_pcap(path):
        match = correlator.search(payload, 0, 600)
        if match is None:
            continue
        number = int(match.group(1))
        if number >= PROBE_BASE:
            continue
        inbound = (
            payload.startswith(b"MESSAGE") if inbound_port is None else destination == inbound_port
        )
        (sent if inbound else out).setdefault(number, stamp)
    return [(at, (out[n] - at) * 1e3) for n, at in sent.items() if n in out]


# ------------------------------------------------------------------------------ SIPp


@dataclass
class Sipp:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    cpu_start: float = 0.0
    cpu_used: float | None = None

    @property
    def stat_path(self) -> Path:
        return self.workdir / f"{self.name}.csv"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def out_path(self) -> Path:
        return self.workdir / f"{self.name}.out"

    def cpu(self) -> float:
        if self.cpu_used is not None:  # a client, reaped: measured by wait()
            return self.cpu_used
        return cpu_seconds(self.proc.pid) - self.cpu_start

    def wait(self, timeout: float) -> None:
        """Wait for a client to finish; its CPU comes from the reaped child's rusage."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc.wait(timeout=timeout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's statistics CSV (-trace_stat): cumulative counts."""
        rows = [line for line in read_text(self.stat_path).splitlines() if line.strip()]
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0].split(";"), rows[-1].split(";"), strict=False))

    def count(self, column: str) -> int:
        value = self.stats().get(column, "0").strip()
        return int(value) if value.isdigit() else 0

    def log_lines(self) -> list[list[str]]:
        """The ``<log>`` lines' fields, split at each space: SIPp writes a variable
        that holds 0.0 as nothing (``[$u0]`` when the microseconds are 0: a few
        calls in 100,000 here), and that field stays, empty."""
        return [line.split(" ") for line in read_text(self.log_path).splitlines() if line.strip()]


def start_sipp(
    name: str,
    scenario: str,
    workdir: Path,
    *,
    remote: tuple[str, int] | None = None,
    extra: Sequence[str] = (),
    timeout: float = 600.0,
) -> Sipp:
    """Start SIPp on a free port with statistics, <log> lines and errors in ``workdir``."""
    binary = require("sipp")
    for attempt in range(3):
        port = free_port()
        argv = [binary]
        if remote is not None:
            argv.append(f"{remote[0]}:{remote[1]}")
        argv += ["-sf", str(SIPP_DIR / scenario), "-i", HOST, "-p", str(port), "-t", "u1",
                 "-nostdin", "-buff_size", str(SIPP_BUFFER),
                 "-timeout", f"{int(timeout)}s",
                 "-trace_stat", "-stf", str(workdir / f"{name}.csv"), "-fd", "1",
                 "-trace_logs", "-log_file", str(workdir / f"{name}.log"),
                 "-trace_err", "-error_file", str(workdir / f"{name}_errors.log"),
                 "-watchdog_minor_maxtriggers", "1000000",
                 "-watchdog_major_maxtriggers", "1000000", *extra]  # fmt: skip
        out = workdir / f"{name}.out"
        with open(out, "wb") as stdout:
            proc = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        sipp = Sipp(name=name, proc=proc, port=port, workdir=workdir)
        if remote is not None:  # a client: it starts sending at once
            sipp.cpu_start = cpu_seconds(proc.pid)
            return sipp
        try:
            wait_bound(proc, port, f"SIPp {name}", out)
        except RuntimeError:
            stop(proc)
            if attempt < 2:
                continue
            raise
        sipp.cpu_start = cpu_seconds(proc.pid)
        return sipp
    raise AssertionError("unreachable")


def start_requester(
    workdir: Path, daemon_port: int, rate: int, calls: int, *, timeout: float
) -> Sipp:
    """``requester.xml`` at the daemon: ``calls`` setups at ``rate`` per second."""
    return start_sipp(
        "requester", "requester.xml", workdir, remote=(HOST, daemon_port),
        extra=["-r", str(rate), "-m", str(calls), "-l", str(max(100, rate * 30)),
               # A refused MESSAGE (503 when overloaded) fails the call, and no BYE
               # follows it (SIPp's default would send one, which the daemon 481s).
               "-default_behaviors", "all,-bye"],
        timeout=timeout,
    )  # fmt: skip


def stop_sipp(sipp: Sipp) -> None:
    """SIGUSR1 makes SIPp quit cleanly (final statistics and logs written)."""
    stop(sipp.proc, signal.SIGUSR1, timeout=10.0)


def _time(seconds: str, micros: str) -> float:
    """A gettimeofday pair as SIPp logs it (an empty field is 0: see Sipp.log_lines)."""
    return (float(seconds) if seconds else 0.0) + (float(micros) / 1e6 if micros else 0.0)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# -------------------------------------------------------------------- the daemon


def daemon_config(
    path: Path,
    *,
    listen: int,
    focus: int,
    proxy: int,
    log_level: str,
    limits: Sequence[str] = (),
    store: str = "",
) -> None:
    """The daemon's config: LIMITS (``--limit``) and ``limits`` go to its [limits] table.

    ``store``: its ``store`` URL (none: ``--store``'s, by default the embedded SQLite in
    its working directory).
    """
    store = store or STORE
    path.write_text(
        (f'store = "{store}"\n' if store else "") + f'listen = "{HOST}:{listen}"\n'
        f'focus = ["sip:conference@{HOST}:{focus}"]\n'
        'profile = "asterisk"\n'
        f'proxy = "sip:{HOST}:{proxy}"\n'
        "probe = false\n"
        f'domain = "{HOST}"\n'
        f'log_level = "{log_level}"\n'
        f'event_loop = "{EVENT_LOOP}"\n'
        "\n[timers]\n"
        "idle_timeout = 3600.0\n"
        "keepalive_interval = 3600.0\n"
        "\n[limits]\n"
        "rate_limit = 1000000\n"
        "max_conferences = 1000000\n" + "".join(f"{line}\n" for line in (*LIMITS, *limits))
    )


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    cpu_start: float = 0.0

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) - self.cpu_start


def start_daemon(
    workdir: Path,
    *,
    focus: int,
    proxy: int,
    log_level: str,
    profile_out: Path | None = None,
    wrapper: Sequence[str] = (),
    start_timeout: float | None = None,
    limits: Sequence[str] = (),
    store: str = "",
) -> Daemon:
    """``vidim-daemon run --config`` in its own process (under cProfile with ``profile_out``).

    ``wrapper`` runs the daemon under another program (``valgrind ...``), with
    ``start_timeout`` seconds to bind its port; ``limits`` are more [limits] lines;
    ``store`` its store URL.
    """
    for attempt in range(3):
        port = free_port()
        config = workdir / "vidim.toml"
        daemon_config(
            config, listen=port, focus=focus, proxy=proxy, log_level=log_level, limits=limits,
            store=store,
        )  # fmt: skip
        if wrapper:
            argv = [*wrapper, sys.executable, "-m", "vidim_daemon", "run", "--config", str(config)]
        elif profile_out is None:
            argv = [str(Path(sys.executable).parent / "vidim-daemon"), "run",
                    "--config", str(config)]  # fmt: skip
            if not os.access(argv[0], os.X_OK):
                argv[:1] = [sys.executable, "-m", "vidim_daemon"]
        else:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile_out), "-m", "vidim_daemon",
                    "run", "--config", str(config)]  # fmt: skip
        log_path = workdir / "daemon.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_bound(proc, port, "vidim-daemon", log_path, start_timeout)
        except RuntimeError:
            stop(proc)
            if attempt < 2 and "Address already in use" in read_text(log_path):
                continue
            raise
        return Daemon(proc=proc, port=port, log_path=log_path, cpu_start=cpu_seconds(proc.pid))
    raise AssertionError("unreachable")


# -------------------------------------------------------------------- the probe


def _header_lines(data: bytes) -> tuple[bytes, list[bytes]]:
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    return lines[0], lines[1:]


_COPIED = {b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq"}


def answer_200(request: bytes, *, to_tag: str, extra: bytes = b"", body: bytes = b"") -> bytes:
    """A 200 to ``request``: its Vias, From, To (with our tag), Call-ID and CSeq copied."""
    _, lines = _header_lines(request)
    out = [b"SIP/2.0 200 OK"]
    for line in lines:
        name = line.split(b":", 1)[0].strip().lower()
        if name in _COPIED:
            if name in (b"to", b"t") and b";tag=" not in line:
                line += b";tag=" + to_tag.encode()
            out.append(line)
    if extra:
        out.append(extra)
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


_PROBE_SDP = (
    b"v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
)


def probe_message(number: int, local_port: int, daemon_port: int) -> bytes:
    """A header-form MESSAGE as requester ``req<number>x0x0`` (the focus scenario's form)."""
    body = b"Let's talk on video."
    head = (
        f"MESSAGE sip:inv-a{number}@{HOST}:{daemon_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{local_port};branch=z9hG4bKprobe{number}x{time.time_ns()}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:req{number}x0x0@{HOST}>;tag=probe{number}\r\n"
        f"To: <sip:inv-a{number}@{HOST}>\r\n"
        f"Call-ID: probe-{number}-{time.time_ns()}@{HOST}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "X-Vidim-Mode: video\r\n"
        f"X-Vidim-Invite: <sip:inv-b{number}@{HOST}>\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class ProbeResult:
    count: int
    to_202_us: list[float] = field(default_factory=list)
    to_invite_us: list[float] = field(default_factory=list)
    #: MESSAGE sent (wall clock, just before sendto) to the INVITE queued on the focus's
    #: socket (the kernel's receive stamp, SO_TIMESTAMPNS): without the probe's wake-up.
    to_invite_kernel_us: list[float] = field(default_factory=list)
    failed: int = 0


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS; the socket module does not name it).
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")


def _recv_stamped(sock: socket.socket) -> tuple[bytes, Any, int | None]:
    """A datagram, its source, and when the kernel queued it (ns, wall clock) if stamped."""
    packet, ancillary, _flags, source = sock.recvmsg(65535, socket.CMSG_SPACE(_TIMESPEC.size))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return packet, source, seconds * 1_000_000_000 + nanoseconds
    return packet, source, None


def run_unloaded_probe(workdir: Path, count: int, log_level: str) -> ProbeResult:
    """MESSAGE -> 202 and MESSAGE -> INVITE, one setup at a time, against Python peers.

    The probe's sockets are the requester, the focus (answers INVITE 200 with
    SDP, takes the ACK) and the proxy (answers every IM 200); a setup is done
    when all of that happened.  perf_counter stamps each datagram as it is read.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    requester, focus, invitees = _udp_socket(), _udp_socket(), _udp_socket()
    focus.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    daemon = start_daemon(
        workdir, focus=focus.getsockname()[1], proxy=invitees.getsockname()[1], log_level=log_level
    )
    result = ProbeResult(count=count)
    try:
        target = (HOST, daemon.port)
        local = requester.getsockname()[1]
        socks = [requester, focus, invitees]
        warmup = min(50, count)
        for i in range(-warmup, count):
            number = PROBE_BASE + warmup + i
            data = probe_message(number, local, daemon.port)
            got_202 = got_invite = None
            invite_stamp: int | None = None
            acked = False
            ims = 0
            start_ns = time.time_ns()
            start = time.perf_counter()
            requester.sendto(data, target)
            deadline = start + 5.0
            while not (got_202 and got_invite and acked and ims >= 3):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                ready, _, _ = select.select(socks, [], [], remaining)
                received = []
                for sock in ready:
                    packet, source, kernel = _recv_stamped(sock)
                    received.append((sock, packet, source, time.perf_counter(), kernel))
                for sock, packet, source, stamp, kernel in received:
                    if sock is requester and packet.startswith(b"SIP/2.0 202"):
                        got_202 = got_202 or stamp
                    elif sock is focus and packet.startswith(b"INVITE"):
                        got_invite = got_invite or stamp
                        invite_stamp = invite_stamp or kernel
                        contact = b"Contact: <sip:conf-%d@%s:%d>;isfocus" % (
                            number, HOST.encode(), focus.getsockname()[1])  # fmt: skip
                        sock.sendto(
                            answer_200(packet, to_tag="focus", body=_PROBE_SDP,
                                       extra=contact + b"\r\nContent-Type: application/sdp"),
                            source,
                        )  # fmt: skip
                    elif sock is focus and packet.startswith(b"ACK"):
                        acked = True
                    elif sock is invitees and packet.startswith(b"MESSAGE"):
                        sock.sendto(answer_200(packet, to_tag="inv"), source)
                        ims += 1
            if i < 0:
                continue
            if got_202 and got_invite and acked and ims >= 3:
                result.to_202_us.append((got_202 - start) * 1e6)
                result.to_invite_us.append((got_invite - start) * 1e6)
                if invite_stamp is not None:
                    result.to_invite_kernel_us.append((invite_stamp - start_ns) / 1e3)
            else:
                result.failed += 1
    finally:
        stop(daemon.proc)
        for sock in (requester, focus, invitees):
            sock.close()
    return result


def warm_up(daemon_port: int, count: int, *, first: int = PROBE_BASE + 500_000) -> None:
    """``count`` probe setups, one at a time, before the timed load (imports, caches).

    Their INVITEs and IMs go to the SIPp focus and invitees, which answer them;
    their call numbers (from ``first``, PROBE_BASE + 500000 unless given: a
    second batch to the same daemon needs numbers of its own) are left out of
    the figures.
    """
    with _udp_socket() as sock:
        local = sock.getsockname()[1]
        for number in range(first, first + count):
            sock.sendto(probe_message(number, local, daemon_port), (HOST, daemon_port))
            ready, _, _ = select.select([sock], [], [], 2.0)
            if ready:
                sock.recv(65535)
    time.sleep(0.3)  # their INVITEs, ACKs and IMs finish


class LoadedProbe(threading.Thread):
    """A few MESSAGEs per second to a loaded daemon, each timed to its 202 (perf_counter).

    Their INVITEs and IMs go to the SIPp focus and invitees like everyone's; the
    setups are left out of the SIPp figures (call numbers from PROBE_BASE).
    """

    def __init__(self, daemon_port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.daemon_port = daemon_port
        self.interval = interval
        self.stop_event = threading.Event()
        self.rtts_us: list[float] = []
        self.lost = 0
        #: (time.monotonic() when sent, final status or 0 when none came) per probe.
        self.answers: list[tuple[float, int]] = []

    def run(self) -> None:
        with _udp_socket() as sock:
            local = sock.getsockname()[1]
            number = PROBE_BASE
            while not self.stop_event.wait(self.interval):
                number += 1
                data = probe_message(number, local, self.daemon_port)
                sent_at = time.monotonic()
                start = time.perf_counter()
                sock.sendto(data, (HOST, self.daemon_port))
                deadline = start + 2.0
                while True:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        self.lost += 1
                        self.answers.append((sent_at, 0))
                        break
                    ready, _, _ = select.select([sock], [], [], remaining)
                    if not ready:
                        continue
                    packet = sock.recv(65535)
                    stamp = time.perf_counter()
                    mine = f"probe{number}".encode() in packet
                    if not mine or not packet.startswith(b"SIP/2.0 "):
                        continue
                    status = int(packet[8:11])
                    if status < 200:
                        continue
                    self.answers.append((sent_at, status))
                    if status == 202:
                        self.rtts_us.append((stamp - start) * 1e6)
                    break


# -------------------------------------------------------------------- vidim steps


class _WireLatencies:
    """A step's loopback-capture latencies, each with its inbound datagram's stamp."""

    #: (stamp on the system clock, ms) per call (None: no capture in this run).
    wire_stamped: list[tuple[float, float]] | None
    #: When the machine stopped running the host-stall probe during the load.
    stalls: list[host_stalls.Stall]

    @property
    def wire_ms(self) -> list[float] | None:
        return None if self.wire_stamped is None else [ms for _, ms in self.wire_stamped]


@dataclass
class VidimStep(_WireLatencies):
    rate: int
    seconds: float
    offered: int = 0
    done: int = 0
    elapsed: float = 0.0
    retrans: dict[str, int] = field(default_factory=dict)
    failed_calls: dict[str, int] = field(default_factory=dict)
    to_202_ms: list[float] = field(default_factory=list)
    to_invite_ms: list[float] = field(default_factory=list)
    #: MESSAGE -> INVITE from the loopback capture, with the MESSAGE's stamp.
    wire_stamped: list[tuple[float, float]] | None = None
    stalls: list[host_stalls.Stall] = field(default_factory=list)
    #: The probe's median run (us): how fast the machine ran this step.
    probe_median_us: float | None = None
    capture_cpu: float = 0.0
    probe_us: list[float] = field(default_factory=list)
    probe_lost: int = 0
    #: The loaded probe's MESSAGEs sent from 0.5 s to 3 s after the load stopped:
    #: how many, and how many got 202 (recovery after overload).
    after_load: int = 0
    after_load_202: int = 0
    daemon_cpu: float = 0.0
    daemon_rss_kib: int = 0
    sipp_cpu: dict[str, float] = field(default_factory=dict)
    udp_drops: int = 0
    background_cpu: float = 0.0
    refusals: Counter[str] = field(default_factory=Counter)
    #: ``--daemons``: how many daemons ran behind Kamailio's dispatcher (0: one, direct);
    #: then ``daemon_cpu`` is their sum, and Kamailio's and Redis's CPU are measured.
    daemons: int = 0
    kamailio_cpu: float = 0.0
    redis_cpu: float = 0.0

    @property
    def achieved(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def failed(self) -> int:
        return self.offered - self.done

    @property
    def retransmissions(self) -> int:
        return sum(self.retrans.values())

    @property
    def clean(self) -> bool:
        return (
            self.offered > 0
            and self.failed == 0
            and self.retransmissions == 0
            and self.achieved >= 0.95 * self.rate
        )


def join_setups(
    requester: Iterable[list[str]], focus: Iterable[list[str]], invitees: Iterable[list[str]]
) -> tuple[dict[int, float], dict[int, float], dict[int, float], dict[int, float]]:
    """Join the three SIPp logs by the requester's call number.

    Returns send time, MESSAGE->202 (ms), MESSAGE->INVITE (ms) and completion time
    of every setup that all three saw through (the probe's numbers left out).
    """
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    to_202: dict[int, float] = {}
    for fields in requester:
        if len(fields) == 6 and fields[0] == "202":
            n = int(fields[1])
            sent[n] = _time(fields[2], fields[3])
            answered[n] = _time(fields[4], fields[5])
            to_202[n] = (answered[n] - sent[n]) * 1e3
    invite_at: dict[int, float] = {}
    ack_at: dict[int, float] = {}
    requester_re = re.compile(r"req(\d+)x([0-9.]*)x([0-9.]*)")
    for fields in focus:
        if len(fields) == 6 and fields[0] == "ACK":
            match = requester_re.fullmatch(fields[1])
            if match is None:
                continue
            n = int(match.group(1))
            invite_at[n] = _time(fields[2], fields[3])
            ack_at[n] = _time(fields[4], fields[5])
    ims: dict[str, float] = {}
    for fields in invitees:
        if len(fields) == 5 and fields[0] == "IM":
            ims[fields[2].removeprefix("sip:")] = _time(fields[3], fields[4])
    to_invite: dict[int, float] = {}
    completed: dict[int, float] = {}
    for n, at in answered.items():
        if n >= PROBE_BASE or n not in ack_at:
            continue
        a, b = ims.get(f"inv-a{n}"), ims.get(f"inv-b{n}")
        if a is None or b is None:
            continue
        to_invite[n] = (invite_at[n] - sent[n]) * 1e3
        completed[n] = max(at, ack_at[n], a, b)
    return sent, to_202, to_invite, completed


def run_vidim_step(
    workdir: Path, rate: int, seconds: float, *, log_level: str, probe_interval: float | None
) -> VidimStep:
    workdir.mkdir(parents=True, exist_ok=True)
    step = VidimStep(rate=rate, seconds=seconds)
    calls = max(1, round(rate * seconds))
    sipps: list[Sipp] = []
    daemon: Daemon | None = None
    probe: LoadedProbe | None = None
    capture: WireCapture | None = None
    stall_probe: subprocess.Popen[bytes] | None = None
    try:
        invitees = start_sipp("invitees", "invitee.xml", workdir)
        sipps.append(invitees)
        focus = start_sipp("focus", "focus.xml", workdir)
        sipps.append(focus)
        daemon = start_daemon(workdir, focus=focus.port, proxy=invitees.port, log_level=log_level)
        warm_up(daemon.port, WARM_UP)
        capture = (
            start_capture(workdir, daemon_filter(daemon.port, focus.port)) if CAPTURE else None
        )
        drops = udp_receive_errors()
        if probe_interval:
            probe = LoadedProbe(daemon.port, probe_interval)
            probe.start()
        daemon.cpu_start = cpu_seconds(daemon.proc.pid)
        others = all_cpu_seconds()
        stall_probe = host_stalls.start(workdir / "host_stalls.txt", seconds + 90)
        wall = time.monotonic()
        requester = start_requester(workdir, daemon.port, rate, calls, timeout=seconds + 60)
        sipps.append(requester)
        requester.wait(timeout=seconds + 90)
        load_end = time.monotonic()
        stop(stall_probe)
        wall = load_end - wall
        settle(requester, focus, invitees)
        step.daemon_cpu = daemon.cpu() / wall * 100
        ours = {os.getpid(), daemon.proc.pid, *(s.proc.pid for s in sipps)}
        if capture is not None:
            ours.add(capture.proc.pid)
            step.capture_cpu = capture.cpu() / wall * 100
        step.background_cpu = background_cpu(others, all_cpu_seconds(), ours) / wall * 100
        step.daemon_rss_kib = peak_rss_kib(daemon.proc.pid)
        step.udp_drops = udp_receive_errors() - drops
        if probe is not None:
            # Recovery: the probe goes on alone for RECOVERY_SECONDS after the load.
            time.sleep(max(0.0, load_end + RECOVERY_SECONDS - time.monotonic()))
            probe.stop_event.set()
            probe.join(timeout=5)
            step.probe_us = probe.rtts_us
            step.probe_lost = probe.lost
            after = [status for at, status in probe.answers if at >= load_end + 0.5]
            step.after_load = len(after)
            step.after_load_202 = after.count(202)
        for sipp in sipps:
            step.sipp_cpu[sipp.name] = sipp.cpu() / wall * 100
    finally:
        if probe is not None:
            probe.stop_event.set()
        if stall_probe is not None:
            stop(stall_probe)
        if capture is not None:
            stop_capture(capture)
        for sipp in sipps:
            stop_sipp(sipp)
        if daemon is not None:
            stop(daemon.proc)
    count_setups(step, sipps, workdir)
    step.stalls, step.probe_median_us = read_host_probe(workdir)
    if capture is not None:
        step.wire_stamped = wire_latencies_ms(capture.path)
        capture.path.unlink(missing_ok=True)  # tens of MB per step
    return step


def settle(requester: Sipp, focus: Sipp, invitees: Sipp) -> None:
    """Let the last invitations and ACKs land (the invitee and focus logs say when)."""
    deadline = time.monotonic() + 5.0
    expected = requester.count("SuccessfulCall(C)")
    while time.monotonic() < deadline:
        *_, completed = join_setups(requester.log_lines(), focus.log_lines(), invitees.log_lines())
        if len(completed) >= expected:
            break
        time.sleep(0.25)


def count_setups(step: VidimStep, sipps: Sequence[Sipp], workdir: Path) -> None:
    """A finished step's counts and latencies, from the SIPp processes ``invitees``,
    ``focus`` and ``requester`` (their statistics and logs in ``workdir``)."""
    by_name = {sipp.name: sipp for sipp in sipps}
    requester, focus, invitees = by_name["requester"], by_name["focus"], by_name["invitees"]
    for sipp in sipps:
        step.retrans[sipp.name] = sipp.count("Retransmissions(C)")
        step.failed_calls[sipp.name] = sipp.count("FailedCall(C)")
    step.offered = requester.count("OutgoingCall(C)")
    sent, to_202, to_invite, completed = join_setups(
        requester.log_lines(), focus.log_lines(), invitees.log_lines()
    )
    step.done = len(completed)
    if completed:
        step.elapsed = max(completed.values()) - min(sent[n] for n in completed)
    step.to_202_ms = list(to_202.values())
    step.to_invite_ms = list(to_invite.values())
    for line in read_text(workdir / "requester_errors.log").splitlines():
        match = re.search(r"received 'SIP/2\.0 (\d{3} [^\r\n']*)", line)
        if match:
            step.refusals[match.group(1)] += 1


# -------------------------------------------------------------------- anchors


@dataclass
class AnchorStep(_WireLatencies):
    path: str
    rate: int
    seconds: float
    offered: int = 0
    done: int = 0
    elapsed: float = 0.0
    failed: int = 0
    retrans: int = 0
    rtt_ms: list[float] = field(default_factory=list)
    #: Kamailio's relay latency from the loopback capture, with the MESSAGE's stamp.
    wire_stamped: list[tuple[float, float]] | None = None
    stalls: list[host_stalls.Stall] = field(default_factory=list)
    #: The probe's median run (us): how fast the machine ran this step.
    probe_median_us: float | None = None
    relay_cpu: float | None = None
    sipp_cpu: dict[str, float] = field(default_factory=dict)
    udp_drops: int = 0
    background_cpu: float = 0.0

    @property
    def achieved(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def clean(self) -> bool:
        return (
            self.offered > 0
            and self.failed == 0
            and self.done == self.offered
            and self.retrans == 0
            and self.achieved >= 0.95 * self.rate
        )


KAMAILIO_CFG = """#!KAMAILIO
# bench/setups.py: a minimal stateful MESSAGE relay (tm), UDP only.
debug=1
log_stderror=yes
children={children}
disable_tcp=yes
auto_aliases=no
listen=udp:{host}:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
modparam("tm", "fr_timer", 4000)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("MESSAGE") && uri =~ "^sip:relay@") {{
        if (!t_relay_to_udp("{host}", "{relay_port}")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
KAMAILIO_SHM_MB = 2048  # tm keeps each transaction ~5 s at ~9-14 KB: 16k/s needs ~1.1 GB
KAMAILIO_CHILDREN = 4


def options_ping(port: int, timeout: float) -> bool:
    with _udp_socket() as sock:
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bKping{time.time_ns()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:ping@{HOST}>;tag=ping\r\nTo: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: ping{time.time_ns()}@{HOST}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(request, (HOST, port))
        ready, _, _ = select.select([sock], [], [], timeout)
        return bool(ready) and sock.recv(65535).startswith(b"SIP/2.0 200")


def start_kamailio(workdir: Path, relay_port: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = require("kamailio")
    for _attempt in range(3):
        port = free_port()
        rundir = workdir / f"kamailio-{port}"
        rundir.mkdir(parents=True)
        cfg = rundir / "kamailio.cfg"
        cfg.write_text(KAMAILIO_CFG.format(children=KAMAILIO_CHILDREN, host=HOST, port=port,
                                           relay_port=relay_port))  # fmt: skip
        log_path = rundir / "kamailio.log"
        argv = [binary, "-f", str(cfg), "-DD", "-E", "-Y", str(rundir),
                "-P", str(rundir / "kamailio.pid"), "-w", str(rundir),
                "-m", str(KAMAILIO_SHM_MB), "-M", "16"]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if options_ping(port, 0.2):
                return proc, port
        stop(proc)
        if "Address already in use" not in read_text(log_path):
            raise RuntimeError(f"Kamailio did not start:\n{read_text(log_path)[-3000:]}")
    raise RuntimeError("Kamailio: no free port")


def run_anchor_step(workdir: Path, path: str, rate: int, seconds: float) -> AnchorStep:
    workdir.mkdir(parents=True, exist_ok=True)
    step = AnchorStep(path=path, rate=rate, seconds=seconds)
    calls = max(1, round(rate * seconds))
    sipps: list[Sipp] = []
    kamailio: subprocess.Popen[bytes] | None = None
    capture: WireCapture | None = None
    stall_probe: subprocess.Popen[bytes] | None = None
    try:
        uas = start_sipp("uas", "message_uas.xml", workdir)
        sipps.append(uas)
        target = uas.port
        relay_cpu = 0.0
        if path == "kamailio":
            kamailio, target = start_kamailio(workdir, uas.port)
            if CAPTURE:
                capture = start_capture(workdir, relay_filter(target, uas.port))
            relay_cpu = group_cpu_seconds(kamailio.pid)
        drops = udp_receive_errors()
        others = all_cpu_seconds()
        stall_probe = host_stalls.start(workdir / "host_stalls.txt", seconds + 90)
        wall = time.monotonic()
        uac = start_sipp(
            "uac", "message_uac.xml", workdir, remote=(HOST, target),
            extra=["-r", str(rate), "-m", str(calls), "-l", str(max(100, rate * 30))],
            timeout=seconds + 60,
        )  # fmt: skip
        sipps.append(uac)
        uac.wait(timeout=seconds + 90)
        wall = time.monotonic() - wall
        stop(stall_probe)
        step.udp_drops = udp_receive_errors() - drops
        ours = {os.getpid(), *(s.proc.pid for s in sipps)}
        if kamailio is not None:
            ours.add(kamailio.pid)
        if capture is not None:
            ours.add(capture.proc.pid)
        step.background_cpu = background_cpu(others, all_cpu_seconds(), ours) / wall * 100
        if kamailio is not None:
            step.relay_cpu = (group_cpu_seconds(kamailio.pid) - relay_cpu) / wall * 100
        for sipp in sipps:
            step.sipp_cpu[sipp.name] = sipp.cpu() / wall * 100
    finally:
        if stall_probe is not None:
            stop(stall_probe)
        if capture is not None:
            stop_capture(capture)
        for sipp in sipps:
            stop_sipp(sipp)
        if kamailio is not None:
            stop(kamailio)
    step.offered = uac.count("OutgoingCall(C)")
    step.failed = uac.count("FailedCall(C)")
    step.retrans = uac.count("Retransmissions(C)") + uas.count("Retransmissions(C)")
    sent, answered = [], []
    for fields in uac.log_lines():
        if len(fields) == 6 and fields[0] == "200":
            sent.append(_time(fields[2], fields[3]))
            answered.append(_time(fields[4], fields[5]))
    step.done = len(answered)
    if answered:
        step.elapsed = max(answered) - min(sent)
    step.rtt_ms = [(a - s) * 1e3 for s, a in zip(sent, answered, strict=True)]
    step.stalls, step.probe_median_us = read_host_probe(workdir)
    if capture is not None:
        step.wire_stamped = wire_latencies_ms(capture.path, target, _ANCHOR_CORRELATOR)
        capture.path.unlink(missing_ok=True)
    return step


def step_anchor(
    workdir: Path, path: str, rates: Sequence[int], seconds: float, echo: bool
) -> list[AnchorStep]:
    """Step up until the first unclean step (retransmission, failure or rate missed)."""
    steps = []
    for rate in rates:
        step = run_anchor_step(workdir / f"{path}-{rate}", path, rate, seconds)
        steps.append(step)
        if echo:
            print(format_anchor_row(step), file=sys.stderr, flush=True)
        if not step.clean:
            break
    return steps


def clean_rate(steps: Sequence[AnchorStep | VidimStep]) -> int | None:
    """The highest rate whose step, and every lower step, was clean; None: not even the first.

    A rate counts as sustained only when every rate below it was too: a clean
    step above an unclean one is a good minute of the machine, not a rate the
    daemon sustains.  (The anchors stop at their first unclean step, so this is
    their last clean one; the vidim steps go on past it, to show the overload.)
    """
    best: int | None = None
    for step in sorted(steps, key=lambda s: s.rate):
        if not step.clean:
            break
        best = step.rate
    return best


# ------------------------------------------- several daemons behind Kamailio's dispatcher


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """redis-server on a free loopback port, keeping nothing on disk; returns once it PONGs."""
    binary = require("redis-server")
    for _attempt in range(3):
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, port
            time.sleep(0.02)  # polling the port, bounded by the deadline
        stop(proc)
    raise RuntimeError(f"redis-server did not start:\n{read_text(workdir / 'redis.log')[-2000:]}")


def dispatcher_states(rundir: Path) -> list[str]:
    """The daemons' flags in ``kamcmd dispatcher.list`` (``A``: active, ``I``: inactive...)."""
    out = subprocess.run(
        [require("kamcmd"), "-s", f"unix:{rundir}/kamailio_ctl", "dispatcher.list"],
        capture_output=True, text=True, check=False, timeout=10,
    ).stdout  # fmt: skip
    return [line.split(":", 1)[1].strip() for line in out.splitlines() if "FLAGS:" in line]


def start_dispatcher(
    workdir: Path, daemon_ports: Sequence[int], focus_port: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Kamailio on examples/kamailio/kamailio.cfg with WITH_DISPATCHER in front of the
    daemons; returns once every daemon is active in its list (they answered a ping)."""
    binary = require("kamailio")
    for _attempt in range(3):
        port = free_port()
        rundir = workdir / f"kamailio-{port}"
        rundir.mkdir(parents=True)
        daemons = rundir / "dispatcher.list"
        daemons.write_text("".join(f"1 sip:{HOST}:{p} 0 0\n" for p in daemon_ports))
        defines = [f"VIDIM_PROXY_IP={HOST}", f"VIDIM_PROXY_PORT={port}",
                   f'VIDIM_DAEMON_IP="{HOST}"', f"VIDIM_DAEMON_PORT={daemon_ports[0]}",
                   f'VIDIM_FOCUS_IP="{HOST}"', f"VIDIM_FOCUS_PORT={focus_port}",
                   f'VIDIM_DOMAIN="{HOST}"', "WITH_DISPATCHER",
                   f'VIDIM_DISPATCHER_LIST="{daemons}"', "VIDIM_DISPATCHER_PING=1"]  # fmt: skip
        argv = [binary, "-f", str(EXAMPLE_KAMAILIO_CFG), "-DD", "-E", "-Y", str(rundir),
                "-P", str(rundir / "kamailio.pid"), "-w", str(rundir),
                "-m", str(KAMAILIO_SHM_MB), "-M", "16",
                *(arg for define in defines for arg in ("-A", define))]  # fmt: skip
        log_path = rundir / "kamailio.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            states = dispatcher_states(rundir) if options_ping(port, 0.2) else []
            if len(states) == len(daemon_ports) and all(f.startswith("A") for f in states):
                return proc, port
            time.sleep(0.1)  # the pings come every second; bounded by the deadline
        stop(proc)
        if "Address already in use" not in read_text(log_path):
            raise RuntimeError(
                f"Kamailio (dispatcher) did not start:\n{read_text(log_path)[-3000:]}"
            )
    raise RuntimeError("Kamailio: no free port")


def run_fleet_step(
    workdir: Path, daemons: int, rate: int, seconds: float, *, log_level: str
) -> VidimStep:
    """``daemons`` daemons on one Redis behind Kamailio's dispatcher, at ``rate`` setups/s."""
    workdir.mkdir(parents=True, exist_ok=True)
    step = VidimStep(rate=rate, seconds=seconds, daemons=daemons)
    calls = max(1, round(rate * seconds))
    sipps: list[Sipp] = []
    started: list[Daemon] = []
    redis: subprocess.Popen[bytes] | None = None
    kamailio: subprocess.Popen[bytes] | None = None
    stall_probe: subprocess.Popen[bytes] | None = None
    try:
        redis, redis_port = start_redis(workdir)
        invitees = start_sipp("invitees", "invitee.xml", workdir)
        sipps.append(invitees)
        focus = start_sipp("focus", "focus.xml", workdir)
        sipps.append(focus)
        for number in range(daemons):
            home = workdir / f"daemon-{number}"
            home.mkdir()
            started.append(start_daemon(
                home, focus=focus.port, proxy=invitees.port, log_level=log_level,
                store=f"redis://{HOST}:{redis_port}/0",
            ))  # fmt: skip
        kamailio, kamailio_port = start_dispatcher(workdir, [d.port for d in started], focus.port)
        for number, daemon in enumerate(started):
            warm_up(daemon.port, WARM_UP, first=PROBE_BASE + 500_000 + number * WARM_UP)
        drops = udp_receive_errors()
        before = {d.proc.pid: cpu_seconds(d.proc.pid) for d in started}
        kamailio_cpu = group_cpu_seconds(kamailio.pid)
        redis_cpu = cpu_seconds(redis.pid)
        others = all_cpu_seconds()
        stall_probe = host_stalls.start(workdir / "host_stalls.txt", seconds + 90)
        wall = time.monotonic()
        requester = start_requester(workdir, kamailio_port, rate, calls, timeout=seconds + 60)
        sipps.append(requester)
        requester.wait(timeout=seconds + 90)
        wall = time.monotonic() - wall
        stop(stall_probe)
        settle(requester, focus, invitees)
        step.daemon_cpu = sum(cpu_seconds(pid) - cpu for pid, cpu in before.items()) / wall * 100
        step.kamailio_cpu = (group_cpu_seconds(kamailio.pid) - kamailio_cpu) / wall * 100
        step.redis_cpu = (cpu_seconds(redis.pid) - redis_cpu) / wall * 100
        ours = {os.getpid(), kamailio.pid, redis.pid, *(d.proc.pid for d in started),
                *(s.proc.pid for s in sipps)}  # fmt: skip
        step.background_cpu = background_cpu(others, all_cpu_seconds(), ours) / wall * 100
        step.daemon_rss_kib = max(peak_rss_kib(d.proc.pid) for d in started)
        step.udp_drops = udp_receive_errors() - drops
        for sipp in sipps:
            step.sipp_cpu[sipp.name] = sipp.cpu() / wall * 100
    finally:
        if stall_probe is not None:
            stop(stall_probe)
        for sipp in sipps:
            stop_sipp(sipp)
        for daemon in started:
            stop(daemon.proc)
        for proc in (kamailio, redis):
            if proc is not None:
                stop(proc)
    count_setups(step, sipps, workdir)
    step.stalls, step.probe_median_us = read_host_probe(workdir)
    return step


def step_fleet(
    workdir: Path, daemons: int, rates: Sequence[int], seconds: float, *, log_level: str,
    echo: bool,
) -> list[VidimStep]:  # fmt: skip
    """One count of daemons, stepped up until its first unclean rate."""
    steps = []
    for rate in rates:
        step = run_fleet_step(
            workdir / f"fleet-{daemons}-{rate}", daemons, rate, seconds, log_level=log_level
        )
        steps.append(step)
        if echo:
            print(format_fleet_row(step), file=sys.stderr, flush=True)
        if not step.clean:
            break
    return steps


def format_fleet_row(step: VidimStep) -> str:
    r = step.retrans
    return (
        f"| {step.daemons} | {step.rate:,} | {step.achieved:,.0f} | {step.failed:,} | "
        f"{r.get('requester', 0):,} / {r.get('focus', 0):,} / {r.get('invitees', 0):,} | "
        f"{_ms(percentile(step.to_invite_ms, 0.5))} | {_ms(percentile(step.to_invite_ms, 0.99))} | "
        f"{_ms(percentile(step.to_202_ms, 0.99))} | "
        f"{step.daemon_cpu:.0f}% | {step.kamailio_cpu:.0f}% | {step.redis_cpu:.0f}% | "
        f"{step.sipp_cpu.get('requester', 0):.0f}% / {step.sipp_cpu.get('focus', 0):.0f}% / "
        f"{step.sipp_cpu.get('invitees', 0):.0f}% | {_stalls_cell(step)} | {step.udp_drops:,} | "
        f"{step.background_cpu:.0f}% | {'yes' if step.clean else 'no'} |"
    )


FLEET_HEADER = (
    "| daemons | offered setups/s | achieved setups/s | failed setups | "
    "retrans req / focus / inv | MESSAGE->INVITE p50 ms | p99 ms | MESSAGE->202 p99 ms | "
    "daemons' CPU (sum) | Kamailio CPU | Redis CPU | SIPp CPU req / focus / inv | "
    "host stalls n / ms / probe p50 us | UDP drops | other jobs' CPU | clean |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def format_fleet(report: Report) -> list[str]:
    """The ``--daemons`` table and the clean rate of each count beside Kamailio's."""
    kamailio = clean_rate([s for s in report.anchors if s.path == "kamailio"])
    counts = sorted({s.daemons for s in report.fleet})
    out = [
        "Several daemons on one Redis behind Kamailio's dispatcher (examples/kamailio/"
        "kamailio.cfg, WITH_DISPATCHER, round robin; setups: 202 + focus ACK + both "
        "invitations answered):",
        "",
        FLEET_HEADER,
        *(format_fleet_row(s) for s in report.fleet),
        "",
        "| daemons | clean setups/s | / Kamailio's clean relay rate | daemons' CPU per setup "
        "at that rate | other jobs' CPU then | most achieved setups/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for count in counts:
        steps = [s for s in report.fleet if s.daemons == count]
        clean = clean_rate(steps)
        ratio = f"{clean / kamailio:.1%}" if clean and kamailio else "-"
        at = next((s for s in steps if s.rate == clean), None)
        cost = f"{at.daemon_cpu * 10 / at.achieved:.2f} ms" if at and at.achieved else "-"
        others = f"{at.background_cpu:.0f}%" if at else "-"
        most = max(s.achieved for s in steps)
        out.append(f"| {count} | {clean or '-'} | {ratio} | {cost} | {others} | {most:,.0f} |")
    out += ["", f"Kamailio's clean MESSAGE relay rate in the same run: {kamailio or '-'}/s."]
    return out


# -------------------------------------------------------------------- profile


def profile_daemon(
    workdir: Path, rate: int, seconds: float, *, log_level: str, top: int = 15
) -> tuple[str, list[tuple[str, float, float]], int, list[tuple[str, float]]]:
    """Load the daemon at ``rate`` and sample it with py-spy (else cProfile).

    Returns the tool, rows (function, own %, total %) and the number of samples.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    pyspy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cprofile_out = workdir / "daemon.prof" if pyspy is None else None
    sipps: list[Sipp] = []
    daemon: Daemon | None = None
    spy: subprocess.Popen[bytes] | None = None
    raw = workdir / "py-spy.txt"
    try:
        invitees = start_sipp("invitees", "invitee.xml", workdir)
        sipps.append(invitees)
        focus = start_sipp("focus", "focus.xml", workdir)
        sipps.append(focus)
        daemon = start_daemon(workdir, focus=focus.port, proxy=invitees.port,
                              log_level=log_level, profile_out=cprofile_out)  # fmt: skip
        if pyspy is not None:
            spy = subprocess.Popen(
                [pyspy, "record", "--pid", str(daemon.proc.pid), "--rate", "250",
                 "--duration", str(int(seconds)), "--format", "raw", "--function",
                 "--nonblocking", "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # py-spy attaches
        requester = start_requester(
            workdir, daemon.port, rate, int(rate * seconds), timeout=seconds + 60
        )
        sipps.append(requester)
        requester.wait(timeout=seconds + 90)
        if spy is not None:
            spy.wait(timeout=seconds + 30)
    finally:
        for sipp in sipps:
            stop_sipp(sipp)
        if daemon is not None:
            stop(daemon.proc, timeout=15.0)
        if spy is not None and spy.poll() is None:
            stop(spy)
    if pyspy is not None:
        rows, samples = _pyspy_rows(read_text(raw), top)
        return "py-spy", rows, samples, _category_rows(read_text(raw))
    rows, samples = _cprofile_rows(cprofile_out, top)
    return "cProfile", rows, samples, []


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``file.py:func`` with the package directory kept."""
    match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame.strip())
    if match is None:
        return frame.strip()
    func, path = match.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    if short.startswith("site-packages/"):
        short = short.removeprefix("site-packages/")
    return f"{short}:{func}"


#: Where a sample's cost goes: the first of these buckets (in this order) that has a frame
#: in the sample's stack takes it, so parsing done inside the transaction layer is parsing
#: and logging done by the allocator's event callback is logging.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("parse: `parse_message` (and what it calls)", r"sip/parser\.py:parse_message$"),
    ("serialize: `Message.to_bytes`", r"sip/message\.py:.*to_bytes$"),
    (
        "logging (records, formatting, file writes)",
        r"^logging/|vidim_daemon/logs\.py:|"
        r"vidim_daemon/cli\.py:.*on_event$|aio/server\.py:.*_log_(message|received)$",
    ),
    ("SDP of the INVITE (`sdp_transform.write`)", r"^sdp_transform/"),
    (
        "random ids and secrets (`secrets`, `uuid`, `os.urandom`)",
        r"^(secrets|uuid|random)\.py:|"
        r"sip/ids\.py:",
    ),
    ("UDP send (`sendto`)", r"selector_events\.py:.*sendto$"),
    ("waiting in epoll", r"selectors\.py:.*select$"),
    (
        "messages: building requests/responses, header access (`message`, `headers`, `uri`)",
        r"sip/(message|headers|uri)\.py:",
    ),
    (
        "dialogs (`vidim.sip.dialog`, `dialog_manager`, `subscription`)",
        r"sip/(dialog|dialog_manager|subscription)\.py:",
    ),
    ("transaction layer (matching, timers, state)", r"sip/transaction\.py:"),
    ("allocator logic (requests, conferences, profiles)", r"allocator/"),
    ("aio glue (`SipServer`: receive, transmit, timer)", r"^aio/\w+\.py:"),
)


def _category_rows(text: str) -> list[tuple[str, float]]:
    compiled = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    counts: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        samples += count
        bucket = next(
            (name for name, rx in compiled if any(rx.search(frame) for frame in frames)),
            "other (event loop, asyncio, interpreter)",
        )
        counts[bucket] += count
    return [(name, n / samples * 100) for name, n in counts.most_common()] if samples else []


def _pyspy_rows(text: str, top: int) -> tuple[list[tuple[str, float, float]], int]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    rows = [
        (name, own[name] / samples * 100, total[name] / samples * 100)
        for name, _ in own.most_common(top)
    ]
    return rows, samples


def _cprofile_rows(path: Path | None, top: int) -> tuple[list[tuple[str, float, float]], int]:
    import pstats

    if path is None or not path.exists():
        return [], 0
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total_time = sum(v[2] for v in entries.values()) or 1.0
    calls = sum(v[1] for v in entries.values())
    rows = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    out = [
        (f"{Path(f).parent.name}/{Path(f).name}:{fn}", v[2] / total_time * 100,
         v[3] / total_time * 100)
        for (f, _line, fn), v in rows
    ]  # fmt: skip
    return out, calls


# -------------------------------------------------------------------- output


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def read_host_probe(workdir: Path) -> tuple[list[host_stalls.Stall], float | None]:
    """The stalls a step's host probe saw, and its median run in microseconds."""
    samples = host_stalls.read_samples(workdir / "host_stalls.txt")
    median = percentile([took for _, took in samples], 0.5)
    return host_stalls.find_stalls(samples), median


def away_from_stalls_ms(step: AnchorStep | VidimStep) -> list[float]:
    """The wire latencies of the datagrams that did not arrive near a host stall."""
    return host_stalls.away_from(step.wire_stamped or [], step.stalls)


def _away_cell(step: AnchorStep | VidimStep) -> str:
    """p99 on the wire away from host stalls, and the share of datagrams that counts."""
    if not step.wire_stamped:
        return "-"
    kept = away_from_stalls_ms(step)
    share = len(kept) / len(step.wire_stamped)
    return f"{_ms(percentile(kept, 0.99))} ({share:.0%})"


def _stalls_cell(step: AnchorStep | VidimStep) -> str:
    """Host stalls: how many, their total ms, and the probe's median run in us."""
    return (
        f"{len(step.stalls)} / {host_stalls.stalled_ms(step.stalls):.0f} / "
        f"{_us(step.probe_median_us)}"
    )


def format_anchor_row(step: AnchorStep) -> str:
    relay = f"{step.relay_cpu:.0f}%" if step.relay_cpu is not None else "-"
    relay_wire = (
        f"{_ms(percentile(step.wire_ms, 0.5))} / {_ms(percentile(step.wire_ms, 0.99))}"
        if step.wire_ms
        else "-"
    )
    return (
        f"| {step.path} | {step.rate:,} | {step.achieved:,.0f} | {step.offered - step.done:,} | "
        f"{step.retrans:,} | {_ms(percentile(step.rtt_ms, 0.5))} | "
        f"{_ms(percentile(step.rtt_ms, 0.99))} | {relay_wire} | {_away_cell(step)} | "
        f"{_stalls_cell(step)} | {relay} | "
        f"{step.sipp_cpu.get('uac', 0):.0f}% / {step.sipp_cpu.get('uas', 0):.0f}% | "
        f"{step.udp_drops:,} | {step.background_cpu:.0f}% | {'yes' if step.clean else 'no'} |"
    )


ANCHOR_HEADER = (
    "| path | offered/s | achieved/s | failed | retrans | RTT p50 ms | RTT p99 ms | "
    "relay on the wire p50 / p99 ms | p99 away from host stalls ms (share) | "
    "host stalls n / ms / probe p50 us | Kamailio CPU | SIPp CPU uac / uas | UDP drops | "
    "other jobs' CPU | clean |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def format_vidim_row(step: VidimStep) -> str:
    r = step.retrans
    wire = step.wire_ms or []
    return (
        f"| {step.rate:,} | {step.achieved:,.0f} | {step.failed:,} | "
        f"{r.get('requester', 0):,} / {r.get('focus', 0):,} / {r.get('invitees', 0):,} | "
        f"{_ms(percentile(step.to_invite_ms, 0.5))} | {_ms(percentile(step.to_invite_ms, 0.99))} | "
        f"{_ms(percentile(wire, 0.5))} | {_ms(percentile(wire, 0.99))} | {_away_cell(step)} | "
        f"{_stalls_cell(step)} | "
        f"{_ms(percentile(step.to_202_ms, 0.5))} | {_ms(percentile(step.to_202_ms, 0.99))} | "
        f"{_us(percentile(step.probe_us, 0.5))} / {_us(percentile(step.probe_us, 0.99))} | "
        f"{step.daemon_cpu:.0f}% | {step.daemon_rss_kib / 1024:.0f} | "
        f"{step.sipp_cpu.get('requester', 0):.0f}% / {step.sipp_cpu.get('focus', 0):.0f}% / "
        f"{step.sipp_cpu.get('invitees', 0):.0f}% | "
        f"{f'{step.capture_cpu:.0f}%' if step.wire_ms is not None else '-'} | {step.udp_drops:,} | "
        f"{step.background_cpu:.0f}% | "
        f"{f'{step.after_load_202}/{step.after_load}' if step.after_load else '-'} | "
        f"{'yes' if step.clean else 'no'} |"
    )


VIDIM_HEADER = (
    "| offered setups/s | achieved setups/s | failed setups | retrans req / focus / inv | "
    "MESSAGE->INVITE p50 ms | p99 ms | on the wire p50 ms | p99 ms | "
    "p99 away from host stalls ms (share) | host stalls n / ms / probe p50 us | "
    "MESSAGE->202 p50 ms | p99 ms | probe 202 p50 / p99 us | daemon CPU | daemon peak RSS MiB | "
    "SIPp CPU req / focus / inv | tcpdump CPU | UDP drops | other jobs' CPU | "
    "probe 202s after the load | clean |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


@dataclass
class Report:
    anchors: list[AnchorStep]
    vidim: list[VidimStep]
    probe: ProbeResult | None
    # tool, rows, samples, rate, categories
    profile: tuple[str, list[tuple[str, float, float]], int, int, list[tuple[str, float]]] | None
    command: str
    quick: bool
    #: The event loop(s) the daemon said it ran on (its start-up line).
    event_loop: str = ""
    #: The daemon's version, as its start-up line says (vidim runs as pure Python).
    version: str = ""
    #: ``--daemons``: the steps of each count of daemons behind the dispatcher.
    fleet: list[VidimStep] = field(default_factory=list)


def git_describe() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [d for d in ("vidim", "daemon") if git("status", "--porcelain", "--", d)]
    return head + (f" ({', '.join(dirty)} modified)" if dirty else "")


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs (nproc), {model or platform.processor()}"


def tool_versions() -> str:
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True, check=False).stdout
    sipp_v = re.search(r"SIPp v?([\w.\-]+)", sipp)
    kam = subprocess.run([require("kamailio"), "-v"], capture_output=True, text=True,
                         check=False).stdout  # fmt: skip
    kam_v = re.search(r"kamailio ([\d.]+)", kam)
    return (
        f"SIPp {sipp_v.group(1) if sipp_v else '?'}, "
        f"Kamailio {kam_v.group(1) if kam_v else '?'}, "
        f"CPython {platform.python_version()}"
    )


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def format_report(report: Report) -> str:
    out: list[str] = []
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out += [
        f"- date: {now}",
        f"- machine: {machine()}",
        f"- tools: {tool_versions()}",
        f"- daemon's event loop: {report.event_loop or '?'}",
        f"- vidim: {git_describe()}, vidim-daemon {report.version or '?'} (pure Python)",
        f"- command: `{report.command}`",
        "",
    ]
    if report.anchors:
        out += ["Anchors (out-of-dialog MESSAGE answered 200):", "", ANCHOR_HEADER]
        out += [format_anchor_row(s) for s in report.anchors]
        out.append("")
    if report.probe is not None:
        p = report.probe
        out += [
            f"Unloaded, Python probe ({len(p.to_invite_us)} setups one at a time, "
            f"{p.failed} failed): MESSAGE->INVITE p50 {_us(percentile(p.to_invite_us, 0.5))} us, "
            f"p99 {_us(percentile(p.to_invite_us, 0.99))} us; MESSAGE->202 p50 "
            f"{_us(percentile(p.to_202_us, 0.5))} us, p99 {_us(percentile(p.to_202_us, 0.99))} us "
            "(the probe's clock when it has read the datagram, its own wake-up included).",
            "",
            f"The same setups, MESSAGE sent to INVITE queued on the focus's socket (the kernel's "
            f"receive stamp, SO_TIMESTAMPNS; the probe's wake-up left out): p50 "
            f"{_us(percentile(p.to_invite_kernel_us, 0.5))} us, "
            f"p99 {_us(percentile(p.to_invite_kernel_us, 0.99))} us.",
            "",
        ]
    if report.fleet:
        return "\n".join(out + format_fleet(report)).rstrip() + "\n"
    if report.vidim:
        out += ["vidim-daemon, one process (setups: 202 + focus ACK + both invitations answered):",
                "", VIDIM_HEADER]  # fmt: skip
        out += [format_vidim_row(s) for s in report.vidim]
        refusals = Counter[str]()
        for s in report.vidim:
            refusals.update(s.refusals)
        if refusals:
            out.append("")
            out.append(
                "Answers other than 202 seen by the requester: "
                + ", ".join(f"{k} x{v}" for k, v in refusals.most_common())
                + "."
            )
        out.append("")
    out += format_targets(report)
    if report.profile is not None:
        tool, rows, samples, rate, categories = report.profile
        if categories:
            out += [
                "",
                f"Profile of the daemon at {rate:,} setups/s ({tool}, {samples:,} samples), "
                "by what the time is spent on (each sample goes to the first of these "
                "found walking its stack up from the running function):",
                "",
                "| spent on | share of samples |",
                "|---|---:|",
            ]
            out += [f"| {name} | {share:.1f}% |" for name, share in categories]
        out += [
            "",
            "Top functions by own time (own = the function itself, total = with what it calls):",
            "",
            "| function | own | total |",
            "|---|---:|---:|",
        ]
        out += [f"| `{name}` | {own:.1f}% | {total:.1f}% |" for name, own, total in rows]
    return "\n".join(out).rstrip() + "\n"


def format_targets(report: Report) -> list[str]:
    kamailio = clean_rate([s for s in report.anchors if s.path == "kamailio"])
    direct = clean_rate([s for s in report.anchors if s.path == "direct"])
    vidim = clean_rate(report.vidim)
    ratio = vidim / kamailio if vidim and kamailio else None
    # The steps up to the clean rate (each clean, as every step below it): the
    # latency targets are read at the clean rate, not at a clean step above it.
    clean_steps = [s for s in report.vidim if vidim is not None and s.rate <= vidim]
    best = max(clean_steps, key=lambda s: s.rate) if clean_steps else None
    p99_sipp = percentile(best.to_invite_ms, 0.99) if best else None
    p99_wire = percentile(best.wire_ms, 0.99) if best and best.wire_ms else None
    # The daemon's latency is the capture's when there is one; SIPp's clocks add their own.
    p99 = p99_wire if p99_wire is not None else p99_sipp
    unloaded = percentile(report.probe.to_invite_kernel_us, 0.5) if report.probe else None
    unloaded_probe = percentile(report.probe.to_invite_us, 0.5) if report.probe else None

    def under_target(latencies: Callable[[VidimStep], list[float]]) -> list[int]:
        return [
            s.rate for s in clean_steps
            if (p := percentile(latencies(s), 0.99)) is not None and p < TARGET_P99_MS
        ]  # fmt: skip

    meeting = under_target(lambda s: s.wire_ms or s.to_invite_ms)
    meeting_sipp = under_target(lambda s: s.to_invite_ms)
    meeting_away = under_target(away_from_stalls_ms)
    measured = (
        f"{_ms(p99_wire)} ms on the wire (loopback capture); {_ms(p99_sipp)} ms on SIPp's clocks"
        if p99_wire is not None
        else f"{_ms(p99_sipp)} ms (SIPp clocks, ~1 ms of SIPp scheduling included)"
    )
    if best is not None and best.wire_stamped:
        measured += (
            f"; {_away_cell(best)} away from host stalls ({len(best.stalls)} stalls, "
            f"{host_stalls.stalled_ms(best.stalls):.0f} ms, in that step)"
        )
    return [
        f"Clean rates (the highest step that, with every step below it, had zero failures, "
        f"zero retransmissions and >= 95% of the offered rate achieved): "
        f"SIPp -> SIPp {direct or '-'}/s, SIPp -> Kamailio -> SIPp "
        f"{kamailio or '-'}/s, vidim {vidim or '-'} setups/s.",
        "",
        "| target (issue 5) | measured | |",
        "|---|---|---|",
        f"| vidim clean setups/s >= 50% of Kamailio's clean relay rate | "
        f"{vidim or 0} / {kamailio or '-'} = "
        f"{f'{ratio:.1%}' if ratio is not None else '-'} | "
        f"{_verdict(None if ratio is None else ratio >= TARGET_RATIO)} |",
        f"| at that rate: zero failed setups, zero retransmissions | "
        f"{'yes' if best else 'no clean step'} | {_verdict(bool(best))} |",
        f"| at that rate: p99 MESSAGE->INVITE < {TARGET_P99_MS:g} ms | {measured} | "
        f"{_verdict(None if p99 is None else p99 < TARGET_P99_MS)} |",
        f"| unloaded p50 MESSAGE->INVITE < {TARGET_UNLOADED_P50_US:g} us | {_us(unloaded)} us "
        f"(Python probe, kernel receive stamp; {_us(unloaded_probe)} us on the probe's clock "
        f"after its wake-up) | "
        f"{_verdict(None if unloaded is None else unloaded < TARGET_UNLOADED_P50_US)} |",
        "",
        f"Highest step that is clean, as every step below it, and has p99 MESSAGE->INVITE "
        f"under {TARGET_P99_MS:g} ms: "
        + (f"{max(meeting)} setups/s" if meeting else "none")
        + (
            f" on the wire, {max(meeting_sipp) if meeting_sipp else 'none'} on SIPp's clocks, "
            f"{max(meeting_away) if meeting_away else 'none'} on the wire away from host "
            "stalls (bench/host_stalls.py: setups whose MESSAGE arrived from 10 ms before a "
            "stall to 250 ms after it left out)."
            if any(s.wire_ms for s in clean_steps)
            else "."
        ),
    ]


def write_results(doc: Path, text: str, *, fleet: bool = False) -> None:
    """Rewrite the results section (``fleet``: the ``--daemons`` one) of ``doc``."""
    if fleet:
        replace_section(doc, FLEET_BEGIN, FLEET_END, text)
    else:
        replace_section(doc, RESULTS_BEGIN, RESULTS_END, text)


# -------------------------------------------------------------------- main


def _rates(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def daemon_event_loops(workdir: Path) -> str:
    """What the daemons' start-up lines say they ran on (``event loop uvloop 0.23.0``)."""
    seen = set()
    for log in workdir.rglob("daemon.log"):
        seen.update(re.findall(r"event loop ([\w]+(?: [\d.]+)?)", read_text(log)))
    return ", ".join(sorted(seen))


def daemon_versions(workdir: Path) -> str:
    """The version the daemons' start-up lines give (``vidim-daemon 0.1.0: allocator on ...``)."""
    seen = set()
    for log in workdir.rglob("daemon.log"):
        seen.update(re.findall(r"vidim-daemon (\S+): .* event loop ", read_text(log)))
    return ", ".join(sorted(seen))


def run(args: argparse.Namespace, workdir: Path) -> Report:
    global EVENT_LOOP, CAPTURE, STORE
    EVENT_LOOP = args.event_loop
    STORE = "memory:" if args.store == "memory" else ""
    CAPTURE = not args.no_capture
    LIMITS[:] = args.limit
    echo = not args.quiet
    if args.daemons:
        return run_fleet(args, workdir)
    anchors: list[AnchorStep] = []
    if not args.no_anchors:
        anchors += step_anchor(workdir, "direct", args.direct_rates, args.anchor_seconds, echo)
        anchors += step_anchor(workdir, "kamailio", args.kamailio_rates, args.anchor_seconds, echo)
    probe = None
    if args.probe_count:
        probe = run_unloaded_probe(workdir / "probe", args.probe_count, args.log_level)
        if echo:
            print(f"probe: {percentile(probe.to_invite_us, 0.5)} us p50", file=sys.stderr)
    vidim: list[VidimStep] = []
    for rate in args.rates:
        step = run_vidim_step(
            workdir / f"vidim-{rate}", rate, args.step_seconds, log_level=args.log_level,
            probe_interval=args.probe_interval or None,
        )  # fmt: skip
        vidim.append(step)
        if echo:
            print(format_vidim_row(step), file=sys.stderr, flush=True)
        if step.achieved < 0.5 * rate:
            break  # collapsed: higher rates say nothing more
    profile = None
    if args.profile_seconds and not args.quick:
        rate = args.profile_rate or clean_rate(vidim) or args.rates[0]
        tool, rows, samples, categories = profile_daemon(
            workdir / "profile", rate, args.profile_seconds, log_level=args.log_level
        )
        profile = (tool, rows, samples, rate, categories)
    return Report(
        anchors,
        vidim,
        probe,
        profile,
        args.command,
        args.quick,
        daemon_event_loops(workdir),
        daemon_versions(workdir),
    )


def run_fleet(args: argparse.Namespace, workdir: Path) -> Report:
    """``--daemons``: Kamailio's relay anchor, then each count of daemons behind it."""
    echo = not args.quiet
    anchors = []
    if not args.no_anchors:
        anchors = step_anchor(workdir, "kamailio", args.kamailio_rates, args.anchor_seconds, echo)
    fleet: list[VidimStep] = []
    for count in args.daemons:
        fleet += step_fleet(workdir, count, args.rates, args.step_seconds,
                            log_level=args.log_level, echo=echo)  # fmt: skip
    return Report(
        anchors, [], None, None, args.command, args.quick, daemon_event_loops(workdir),
        daemon_versions(workdir), fleet,
    )  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds, low rates")
    parser.add_argument("--rates", type=_rates,
                        help="setups/s of the steps [DEFAULT_RATES; DEFAULT_FLEET_RATES with "
                        "--daemons]")  # fmt: skip
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--kamailio-rates", type=_rates, default=list(DEFAULT_KAMAILIO_RATES))
    parser.add_argument("--direct-rates", type=_rates, default=list(DEFAULT_DIRECT_RATES))
    parser.add_argument("--anchor-seconds", type=float, default=10.0)
    parser.add_argument("--no-anchors", action="store_true")
    parser.add_argument("--probe-count", type=int, default=2000, help="unloaded probe setups")
    parser.add_argument("--probe-interval", type=float, default=0.1,
                        help="seconds between probe MESSAGEs during load (0: none)")  # fmt: skip
    parser.add_argument("--profile-seconds", type=float, default=15.0, help="0: no profile")
    parser.add_argument("--profile-rate", type=int, default=0,
                        help="setups/s while profiling [the highest clean rate]")  # fmt: skip
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="the daemon's log level [info, its default]")  # fmt: skip
    parser.add_argument("--event-loop", default="auto", choices=["auto", "uvloop", "asyncio"],
                        help="the daemon's event_loop [auto: uvloop when installed]")  # fmt: skip
    parser.add_argument("--limit", action="append", default=[], metavar="KEY=VALUE",
                        help="a [limits] setting for the daemon: overload_hold=0.5")  # fmt: skip
    parser.add_argument("--no-capture", action="store_true",
                        help="no tcpdump capture of the load steps (no wire latency)")  # fmt: skip
    parser.add_argument("--daemons", type=_rates, default=[],
                        help="counts of daemons on one Redis behind Kamailio's dispatcher "
                        "(1,2,4); the rates default to DEFAULT_FLEET_RATES")  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="keep logs and statistics here")
    parser.add_argument("--write", type=Path, metavar="DOC", help="rewrite DOC's results section")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--store",
        choices=["sqlite", "memory"],
        default="sqlite",
        help="the single daemon's store [sqlite: the embedded default, write-ahead]",
    )
    args = parser.parse_args(argv)
    if args.rates is None:
        args.rates = list(DEFAULT_FLEET_RATES if args.daemons else DEFAULT_RATES)
    if args.quick:
        args.rates = [20]
        args.step_seconds = 3.0
        args.direct_rates = [200]
        args.kamailio_rates = [200]
        args.anchor_seconds = 2.0
        args.probe_count = 50
        args.profile_seconds = 0
    args.command = (
        os.environ.get("BENCH_COMMAND")
        or "python bench/setups.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="vidim-setups-") as tmp:
            report = run(args, Path(tmp))
    text = format_report(report)
    print(text)
    if args.write is not None:
        write_results(args.write, text, fleet=bool(args.daemons))
    if args.quick:
        steps: list[VidimStep | AnchorStep] = [*report.vidim, *report.fleet, *report.anchors]
        incomplete = [s for s in steps if s.done != s.offered or s.offered == 0]
        if incomplete or (report.probe and report.probe.failed):
            print("quick run: some setups did not complete", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

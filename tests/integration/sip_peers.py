"""Helpers for the interop tests: free ports, process control, Kamailio and SIPp runs.

Named ``sip_peers`` (not imported from conftest) so that test modules can import it
without clashing with other conftest modules on sys.path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vidim.sip import Request, Response, parse_message

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds a program gets to answer on its port
STOP_TIMEOUT = 10.0  # seconds a program gets to exit after SIGTERM
KAMAILIO_MODULES = ("tm.so", "sl.so", "textops.so", "siputils.so", "maxfwd.so")


# -- ports ---------------------------------------------------------------------------
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP, never handed out twice per process.

    The kernel picks it (bind to port 0), so concurrent pytest processes and xdist workers
    get distinct ports; the short window between closing the probe sockets and the real
    program binding the port is covered by the start-up retries of the fixtures.
    """
    for _ in range(200):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind((HOST, 0))
            port: int = tcp.getsockname()[1]
            if port in _ports_handed_out:
                continue
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        return port
    raise RuntimeError("no free UDP+TCP port found on 127.0.0.1")


def udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to UDP 127.0.0.1:port or *:port (read-only probe)."""
    suffix = f":{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/udp") as table:
        next(table)
        for line in table:
            local = line.split()[1]  # e.g. 0100007F:13C4
            if local.endswith(suffix) and local.split(":")[0] in ("0100007F", "00000000"):
                return True
    return False


# -- processes -----------------------------------------------------------------------
def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.fail(
            f"{name} is not installed: scripts/setup test installs it (listed in "
            "scripts/test-packages.txt); run ./scripts/setup test",
            pytrace=False,
        )
    return path


def stop_process_group(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM the process group led by ``proc``, SIGKILL it when it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    # Forked workers of a program that died on its own may still be around.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# -- a small vidim UDP client used by the fixtures and tests -------------------------
def new_branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex


def udp_transaction(
    sock: socket.socket,
    request: Request,
    dest: tuple[str, int],
    *,
    timeout: float = 5.0,
    retransmit: float = 0.5,
) -> Response:
    """Send ``request`` over UDP and return its final response (matched by branch and CSeq).

    Retransmits every ``retransmit`` seconds (UDP may lose datagrams); bounded by ``timeout``.
    """
    branch = request.top_via.branch
    cseq = request.cseq
    data = request.to_bytes()
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(f"no final response to {request!r} from {dest} in {timeout}s")
        if now >= next_send:
            sock.sendto(data, dest)
            next_send = now + retransmit
        sock.settimeout(max(0.01, min(next_send, deadline) - now))
        try:
            raw, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        message = parse_message(raw)
        if (
            isinstance(message, Response)
            and message.status >= 200
            and message.top_via.branch == branch
            and message.cseq == cseq
        ):
            return message


def options_ping(port: int, *, timeout: float) -> Response:
    """An OPTIONS built with vidim, sent over UDP to 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local = sock.getsockname()[1]
        request = Request(
            "OPTIONS",
            f"sip:{HOST}:{port}",
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{local};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:probe@{HOST}>;tag={uuid.uuid4().hex[:8]}"),
                ("To", f"<sip:{HOST}:{port}>"),
                ("Call-ID", f"{uuid.uuid4().hex}@{HOST}"),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        return udp_transaction(sock, request, (HOST, port), timeout=timeout, retransmit=0.1)


# -- Kamailio ------------------------------------------------------------------------
def kamailio_module_dir() -> str:
    out = subprocess.run(
        ["dpkg", "-L", "kamailio"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    for line in out.splitlines():
        if line.endswith("/sl.so"):
            return line.rsplit("/", 1)[0]
    for candidate in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules"):
        if os.path.exists(f"{candidate}/sl.so"):
            return candidate
    pytest.fail("kamailio is installed but its sl.so module was not found", pytrace=False)


def kamailio_config(port: int, module_dir: str, relay_to: tuple[str, int] | None) -> str:
    """A minimal stateless config; MESSAGEs to ``sip:relay@...`` are relayed with tm."""
    relay = ""
    if relay_to is not None:
        relay = (
            '    if (is_method("MESSAGE") && uri =~ "^sip:relay@") {\n'
            f'        if (!t_relay_to_udp("{relay_to[0]}", "{relay_to[1]}")) {{\n'
            "            sl_reply_error();\n"
            "        }\n"
            "        exit;\n"
            "    }\n"
        )
    modules = "".join(f'loadmodule "{name}"\n' for name in KAMAILIO_MODULES)
    return (
        "#!KAMAILIO\n"
        "debug=2\n"
        "log_stderror=yes\n"
        "children=2\n"
        "tcp_children=2\n"
        "auto_aliases=no\n"
        f"listen=udp:{HOST}:{port}\n"
        f"listen=tcp:{HOST}:{port}\n"
        f'mpath="{module_dir}/"\n'
        f"{modules}"
        # siputils' RPID AVP needs the pv module, which this config does not load.
        'modparam("siputils", "rpid_avp", "")\n'
        "\n"
        "request_route {\n"
        '    if (!mf_process_maxfwd_header("10")) {\n'
        '        sl_send_reply("483", "Too Many Hops");\n'
        "        exit;\n"
        "    }\n"
        f"{relay}"
        '    if (is_method("MESSAGE|OPTIONS")) {\n'
        '        sl_send_reply("200", "OK");\n'
        "        exit;\n"
        "    }\n"
        '    sl_send_reply("405", "Method Not Allowed");\n'
        "}\n"
    )


@dataclass
class Kamailio:
    proc: subprocess.Popen[bytes]
    port: int
    rundir: Path
    log_path: Path

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)

    def log(self) -> str:
        return read_text(self.log_path)

    def complaints(self) -> list[str]:
        """Log lines at WARNING level or worse (Kamailio logs a bad message at ERROR)."""
        levels = (" WARNING:", " ERROR:", " CRITICAL:", " ALERT:", " BUG:")
        return [line for line in self.log().splitlines() if any(lv in line for lv in levels)]


def start_kamailio(
    binary: str, module_dir: str, workdir: Path, relay_to: tuple[str, int] | None
) -> Kamailio:
    port = free_port()
    rundir = workdir / f"kamailio-{port}"
    rundir.mkdir(parents=True)
    cfg = rundir / "kamailio.cfg"
    cfg.write_text(kamailio_config(port, module_dir, relay_to))
    log_path = rundir / "kamailio.log"
    # -m/-M: shared/private memory in MB; -DD: main process in the foreground; -E: log to
    # stderr (there is no /dev/log in the container).
    argv = [binary, "-f", str(cfg), "-DD", "-E", "-Y", str(rundir),
            "-P", str(rundir / "kamailio.pid"), "-w", str(rundir), "-m", "64", "-M", "8"]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Kamailio(proc=proc, port=port, rundir=rundir, log_path=log_path)


def wait_kamailio_ready(kamailio: Kamailio) -> bool:
    """True once it answers an OPTIONS with 200; False if it exited (e.g. port taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if kamailio.proc.poll() is not None:
            return False
        try:
            response = options_ping(kamailio.port, timeout=0.5)
        except TimeoutError:
            continue
        assert response.status == 200, f"Kamailio answered the OPTIONS ping with {response!r}"
        return True
    raise AssertionError(
        f"Kamailio did not answer on {HOST}:{kamailio.port} within {START_TIMEOUT}s:\n"
        + kamailio.log()
    )


# -- SIPp ----------------------------------------------------------------------------
#: SIPp exit codes (sipp(1)): 0 all calls succeeded, 1 some failed, 97 internal exit,
#: 99 no call processed, 255 (-1) fatal error, 254 (-2) fatal error binding a socket.
SIPP_BIND_ERROR = 254


@dataclass
class Sipp:
    proc: subprocess.Popen[bytes]
    port: int
    argv: list[str]
    workdir: Path
    finished: bool = field(default=False)

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "sipp.stdout"

    @property
    def messages_path(self) -> Path:
        return self.workdir / "messages.log"

    @property
    def errors_path(self) -> Path:
        return self.workdir / "errors.log"

    def errors(self) -> str:
        """SIPp's unexpected-message trace (no file when there was none)."""
        return read_text(self.errors_path).strip()

    def report(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n--- errors.log:\n{read_text(self.errors_path)}"
            f"\n--- messages.log:\n{read_text(self.messages_path)}"
        )

    def wait(self, timeout: float = 20.0) -> int:
        """SIPp's exit code (bounded wait)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(self.proc)
            raise AssertionError(f"SIPp did not finish in {timeout}s\n{self.report()}") from None
        self.finished = True
        return code

    def wait_bound(self) -> None:
        """Wait until SIPp has bound its UDP port (read-only probe of /proc/net/udp)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if udp_port_bound(self.port):
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"SIPp exited with {self.proc.returncode} before binding "
                    f"{HOST}:{self.port}\n{read_text(self.stdout_path)}\n{self.report()}"
                )
            time.sleep(0.01)  # polling interval of a bounded readiness wait
        raise AssertionError(f"SIPp did not bind {HOST}:{self.port} in {START_TIMEOUT}s")


# -- Kamailio with the shipped examples/kamailio/kamailio.cfg (appended for tests/e2e) --
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_KAMAILIO_CFG = REPO_ROOT / "examples" / "kamailio" / "kamailio.cfg"


def example_kamailio_defines(
    port: int, daemon: tuple[str, int], focus: tuple[str, int], domain: str
) -> list[str]:
    """The ``-A`` defines that point examples/kamailio/kamailio.cfg at a test's ports."""
    return [
        f"VIDIM_PROXY_IP={HOST}",
        f"VIDIM_PROXY_PORT={port}",
        f'VIDIM_DAEMON_IP="{daemon[0]}"',
        f"VIDIM_DAEMON_PORT={daemon[1]}",
        f'VIDIM_FOCUS_IP="{focus[0]}"',
        f"VIDIM_FOCUS_PORT={focus[1]}",
        f'VIDIM_DOMAIN="{domain}"',
        "WITH_DEBUG",
    ]


def start_example_kamailio(
    binary: str,
    workdir: Path,
    *,
    daemon: tuple[str, int],
    focus: tuple[str, int],
    domain: str,
    port: int | None = None,
    defines: Sequence[str] = (),
) -> Kamailio:
    """Start Kamailio on the shipped example config, unchanged, with ``-A`` defines.

    ``defines`` are more of them (e.g. :func:`dispatcher_defines`).

    Flags as in the field notes: -DD (foreground, still forks workers), -E (log to stderr:
    there is no /dev/log), -Y (runtime dir for its FIFO/socket), shm sized for tests.
    """
    port = free_port() if port is None else port
    rundir = workdir / f"kamailio-{port}"
    rundir.mkdir(parents=True)
    log_path = rundir / "kamailio.log"
    argv = [binary, "-f", str(EXAMPLE_KAMAILIO_CFG), "-DD", "-E", "-Y", str(rundir),
            "-P", str(rundir / "kamailio.pid"), "-w", str(rundir), "-m", "64", "-M", "8"]  # fmt: skip
    for define in [*example_kamailio_defines(port, daemon, focus, domain), *defines]:
        argv += ["-A", define]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Kamailio(proc=proc, port=port, rundir=rundir, log_path=log_path)


def start_example_kamailio_ready(
    workdir: Path, *, daemon: tuple[str, int], focus: tuple[str, int], domain: str,
    started: list[Kamailio], defines: Sequence[str] = (),
) -> Kamailio:  # fmt: skip
    """start_example_kamailio + wait_kamailio_ready, retried on a new port if it was taken.

    Every process started is appended to ``started`` (for the caller's finalizer).
    """
    binary = require_binary("kamailio")
    kamailio: Kamailio | None = None
    for _attempt in range(3):
        kamailio = start_example_kamailio(
            binary, workdir, daemon=daemon, focus=focus, domain=domain, defines=defines
        )
        started.append(kamailio)
        if wait_kamailio_ready(kamailio):
            return kamailio
        stop_process_group(kamailio.proc)
        if "Address already in use" not in kamailio.log():
            break
    assert kamailio is not None
    raise AssertionError(
        f"Kamailio exited with {kamailio.proc.returncode} during start-up:\n" + kamailio.log()
    )


# -- the example config's dispatcher variant (-A WITH_DISPATCHER) ----------------------
def dispatcher_defines(
    list_path: Path, daemons: Sequence[tuple[str, int]], *, ping: int = 1, timeout_ms: int = 2000
) -> list[str]:
    """Write the daemons' list file (examples/kamailio/dispatcher.list's format, set 1)
    and return the ``-A`` defines that turn the example config's dispatcher on."""
    list_path.write_text("".join(f"1 sip:{host}:{port} 0 0\n" for host, port in daemons))
    return [
        "WITH_DISPATCHER",
        f'VIDIM_DISPATCHER_LIST="{list_path}"',
        f"VIDIM_DISPATCHER_PING={ping}",
        f"VIDIM_DISPATCHER_TIMEOUT={timeout_ms}",
    ]


def dispatcher_states(kamailio: Kamailio) -> dict[str, str]:
    """``kamcmd dispatcher.list`` of a running Kamailio: {destination URI: flags}.

    Flags as Kamailio prints them: ``A`` active, ``I`` inactive, ``T`` trying,
    ``D`` disabled, then ``P`` when it is being probed (``AP``, ``IP``).
    """
    out = subprocess.run(
        [require_binary("kamcmd"), "-s", f"unix:{kamailio.rundir}/kamailio_ctl",
         "dispatcher.list"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    uris = [line.split(":", 1)[1].strip() for line in out.splitlines() if "URI:" in line]
    flags = [line.split(":", 1)[1].strip() for line in out.splitlines() if "FLAGS:" in line]
    return dict(zip(uris, flags, strict=True))


# -- vidim-daemon processes (the worktree's code: python -m vidim_daemon) ----------------
class VidimProcess:
    """``python -m vidim_daemon ARGS --log-json --log-level debug`` in its own process group.

    The log (JSON lines) goes to ``log_path``; :meth:`kill` and :meth:`stop` end the
    process group; the fixture that starts it stops it in a finalizer.
    """

    def __init__(self, name: str, args: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        argv = [sys.executable, "-m", "vidim_daemon", *args, "--log-json", "--log-level", "debug"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in read_text(self.log_path).splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def messages(self, prefix: str) -> list[dict[str, object]]:
        """The log records whose message starts with ``prefix``."""
        return [r for r in self.records() if str(r.get("message", "")).startswith(prefix)]

    def wait_log(self, prefix: str, timeout: float = START_TIMEOUT) -> dict[str, object]:
        """The first log record whose message starts with ``prefix`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while not (found := self.messages(prefix)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not log {prefix!r}\n{self.tail()}")
            time.sleep(0.05)  # polling its log file, bounded by the deadline
        return found[0]

    def wait_ready(self, port: int) -> None:
        """Until it answers an OPTIONS on ``port`` (it binds once its store is loaded)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n"
                                     f"{self.tail()}")  # fmt: skip
            try:
                options_ping(port, timeout=0.3)
                return
            except TimeoutError:
                continue
        raise AssertionError(f"{self.name} did not answer on {port}\n{self.tail()}")

    def tail(self, chars: int = 8000) -> str:
        return read_text(self.log_path)[-chars:]

    def kill(self) -> int:
        """kill -9 its process group."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> int:
        return stop_process_group(self.proc)

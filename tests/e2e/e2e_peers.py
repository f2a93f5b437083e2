"""End-to-end helpers (the ``site`` fixture is in conftest.py): real Kamailio (examples/kamailio/kamailio.cfg), the real
``vidim-daemon run`` with its built-in focus, pjsua2 softphones (examples/softphone.py
--json, one process each: one pjsua2 Endpoint per process) and baresip, on 127.0.0.1.

Every child runs in its own process group and is stopped by PID/process group in a
finalizer, also when the test fails; every wait is bounded and wakes on the child's
output (reader threads + a condition variable), never on a fixed sleep.  Logs of every
child are printed at teardown, so a failing test shows them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "integration"), str(HERE)]

from baresip_peer import Baresip  # noqa: E402
from sip_peers import (  # noqa: E402
    HOST,
    REPO_ROOT,
    Kamailio,
    free_port,
    options_ping,
    start_example_kamailio_ready,
    stop_process_group,
)

DOMAIN = "vidim.test"
SERVICE = f"sip:vidim@{DOMAIN}"
SOFTPHONE = REPO_ROOT / "examples" / "softphone.py"
WAIT = 10.0  # default bound of a wait for one event


# -- a child process whose stdout lines are collected by a thread ---------------------
class Child:
    def __init__(self, name: str, argv: list[str], log_path: Path, *, stdin: bool) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.stderr = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self.stderr, start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(
        self, predicate: Callable[[str], Any], what: str, timeout: float = WAIT, start: int = 0
    ) -> Any:
        """The first truthy ``predicate(line)`` among lines[start:], waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        index = start
        with self.cond:
            while True:
                while index < len(self.lines):
                    found = predicate(self.lines[index])
                    index += 1
                    if found:
                        return found
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"{self.name} exited ({self.proc.returncode}) "
                                         f"before {what}\n{self.dump()}")  # fmt: skip
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.name}: no {what} within {timeout}s\n{self.dump()}")
                self.cond.wait(min(remaining, 0.5))

    def dump(self) -> str:
        with self.cond:
            out = "\n".join(self.lines[-200:])
        err = self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
        return f"--- {self.name} stdout (tail):\n{out}\n--- {self.name} stderr (tail):\n{err}"

    def stop(self) -> int:
        code = stop_process_group(self.proc)  # type: ignore[arg-type]
        self.stderr.close()
        return code


# -- pjsua2 softphone (examples/softphone.py --json) -------------------------------------
class Phone(Child):
    def __init__(self, user: str, proxy: tuple[str, int], workdir: Path, *extra: str) -> None:
        argv = [sys.executable, str(SOFTPHONE), "--json", "--user", user, "--domain", DOMAIN,
                "--proxy", f"sip:{proxy[0]}:{proxy[1]}", "--registrar", f"sip:{DOMAIN}",
                "--pjsip-log", str(workdir / f"pjsip-{user}.log"), *extra]  # fmt: skip
        super().__init__(f"phone {user}", argv, workdir / f"phone-{user}.stderr", stdin=True)
        self.user = user
        self.aor = f"sip:{user}@{DOMAIN}"

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            lines = list(self.lines)
        out = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if kind is None or event.get("event") == kind:
                out.append(event)
        return out

    def mark(self) -> int:
        """A position in the event stream: later waits can start from it."""
        with self.cond:
            return len(self.lines)

    def wait(
        self, kind: str, check: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = WAIT, start: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        def predicate(line: str) -> dict[str, Any] | None:
            try:
                event = json.loads(line)
            except ValueError:
                return None
            if event.get("event") == kind and check(event):
                return dict(event)
            return None

        found: dict[str, Any] = self.wait_line(predicate, f"event {kind}", timeout, start)
        return found

    def message(self, to: str, body: str = "", headers: dict[str, str] | None = None,
                timeout: float = WAIT) -> dict[str, Any]:  # fmt: skip
        """Send a MESSAGE and return its message_status event (final response)."""
        start = self.mark()
        self.send(cmd="message", to=to, body=body, headers=headers or {})
        return self.wait("message_status", lambda e: e["to"] == to, timeout, start)

    def wait_im(self, check: Callable[[dict[str, Any]], bool], timeout: float = WAIT,
                start: int = 0) -> dict[str, Any]:  # fmt: skip
        return self.wait("im_received", check, timeout, start)

    def rx_packets(self, call: int | None = None, timeout: float = WAIT) -> int:
        """Bounded poll of the audio rx counters until one is > 0; returns the largest."""
        deadline = time.monotonic() + timeout
        best = 0
        while time.monotonic() < deadline:
            start = self.mark()
            self.send(cmd="stats")
            stats = self.wait("stats", timeout=max(0.1, deadline - time.monotonic()), start=start)
            for entry in stats["calls"]:
                if call is not None and entry["call"] != call:
                    continue
                for stream in entry["streams"]:
                    if stream["type"] == "audio":
                        best = max(best, int(stream.get("rx_packets", 0)))
            if best > 0:
                return best
            # wait for more output (or 0.2 s) before asking again: a bounded poll
            with self.cond:
                self.cond.wait(0.2)
        return best


def header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def conference_of(value: str) -> dict[str, str]:
    """``<sip:conf-...;key=...>;mode=video;id=...`` -> {uri, mode, id}."""
    assert value.startswith("<"), value
    uri, _, params = value[1:].partition(">")
    out = {"uri": uri}
    for param in params.split(";"):
        name, _, val = param.strip().partition("=")
        if name:
            out[name] = val
    return out


# -- vidim-daemon --------------------------------------------------------------------
def daemon_argv() -> list[str]:
    script = Path(sys.executable).parent / "vidim-daemon"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from vidim_daemon.cli import main; main()"]


class Daemon(Child):
    def __init__(self, workdir: Path, listen: int, focus_listen: int, proxy: int,
                 extra: list[str], config: str) -> None:  # fmt: skip
        cfg = workdir / f"vidim-{listen}.toml"
        cfg.write_text(config)
        argv = [*daemon_argv(), "run", "--config", str(cfg),
                "--listen", f"{HOST}:{listen}", "--focus-listen", f"{HOST}:{focus_listen}",
                "--proxy", f"sip:{HOST}:{proxy}", "--domain", DOMAIN, "--no-probe",
                "--log-json", "--log-level", "debug",
                "--state-dir", str(workdir / f"state-{listen}"), *extra]  # fmt: skip
        # The daemon logs to stderr: merge it into stdout for the reader thread.
        super().__init__(f"vidim-daemon :{listen}", argv, workdir / f"vidim-{listen}.stderr",
                         stdin=False)  # fmt: skip
        self.listen = listen
        self.focus_listen = focus_listen
        self.extra = extra
        self.config = config

    def wait_ready(self, focus: bool = True) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"vidim-daemon exited with {self.proc.returncode}\n{self.dump()}"
                )
            try:
                options_ping(self.listen, timeout=0.3)
                if focus:
                    options_ping(self.focus_listen, timeout=0.3)
                return
            except TimeoutError:
                continue
        raise AssertionError(f"vidim-daemon did not answer OPTIONS within {WAIT}s\n{self.dump()}")

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


@dataclass
class Site:
    """One test's world: Kamailio, vidim-daemon, phones; all stopped at teardown."""

    workdir: Path
    kamailio: Kamailio | None = None
    daemon: Daemon | None = None
    daemon_port: int = 0
    focus_port: int = 0
    children: list[Child] = field(default_factory=list)
    baresips: list[Baresip] = field(default_factory=list)
    kamailios: list[Kamailio] = field(default_factory=list)

    def start(self, *, daemon_args: list[str] = (), config: str = "",  # type: ignore[assignment]
              focus: tuple[str, int] | None = None) -> None:  # fmt: skip
        # The ports are free when picked, but another process (a parallel test run, any
        # program's ephemeral port) can take one before the daemon binds it: then the
        # daemon exits with "Address already in use" and the start is tried again on new
        # ports, with a new Kamailio (its routes name the daemon's port).
        for attempt in range(3):
            self.daemon_port = free_port()
            self.focus_port = free_port()
            self.kamailio = start_example_kamailio_ready(
                self.workdir, daemon=(HOST, self.daemon_port),
                focus=focus or (HOST, self.focus_port), domain=DOMAIN, started=self.kamailios,
            )  # fmt: skip
            # RTP below the kernel's ephemeral range (32768-60999), so that no socket
            # bound to port 0 can be holding one of them.
            first = random.randrange(10000, 19800, 2)
            toml = f"[media]\nrtp_ports = [{first}, {first + 199}]\n" + config
            self.daemon = Daemon(self.workdir, self.daemon_port, self.focus_port,
                                 self.kamailio.port, list(daemon_args), toml)  # fmt: skip
            self.children.append(self.daemon)
            try:
                self.daemon.wait_ready(focus="--focus" not in daemon_args)
                return
            except AssertionError as error:
                if attempt == 2 or "Address already in use" not in str(error):
                    raise
                self.daemon.stop()
                stop_process_group(self.kamailio.proc)

    def phone(self, user: str, *extra: str, register: bool = True) -> Phone:
        assert self.kamailio is not None
        phone = Phone(user, self.kamailio.addr, self.workdir, *extra)
        self.children.append(phone)
        phone.wait("ready")
        if register:
            phone.wait("registered", lambda e: e["code"] == 200)
        return phone

    def baresip(self, user: str, **options: Any) -> Baresip:
        """A registered baresip; ``options`` are :class:`Baresip` fields (e.g. video_size)."""
        assert self.kamailio is not None
        first = random.randrange(20000, 39000, 2)
        peer = Baresip(user, DOMAIN, self.kamailio.addr, self.workdir / f"baresip-{user}",
                       free_port(), free_port(), (first, first + 99), **options)  # fmt: skip
        self.baresips.append(peer)
        peer.start(SERVICE)
        peer.connect_ctrl()
        peer.wait_registered()
        return peer

    def kill_and_restart_daemon(self) -> None:
        """kill -9 the daemon, then start it again with the same arguments, ports and store."""
        old = self.daemon
        assert old is not None
        assert self.kamailio is not None
        os.killpg(old.proc.pid, signal.SIGKILL)
        old.proc.wait(timeout=10)
        self.daemon = Daemon(self.workdir, old.listen, old.focus_listen, self.kamailio.port,
                             old.extra, old.config)  # fmt: skip
        self.children.append(self.daemon)
        self.daemon.wait_ready(focus="--focus" not in old.extra)

    def sigterm_daemon(self) -> None:
        assert self.daemon is not None
        self.daemon.proc.send_signal(signal.SIGTERM)

    def teardown(self) -> None:
        # SIGTERM every process group first, so that they wind down in parallel (the daemon
        # drains for up to 5 s, phones unregister), then wait for each with a bound.
        for proc in [c.proc for c in self.children] + [b.proc for b in self.baresips if b.proc]:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for peer in self.baresips:
            code = peer.stop()
            print(f"--- baresip {peer.user} exited with {code}; output tail:")
            print(peer.output()[-8000:])
        for child in reversed(self.children):
            code = child.stop()
            print(f"--- {child.name} exited with {code}")
            print(child.dump())
        for kamailio in self.kamailios:
            code = stop_process_group(kamailio.proc)
            print(f"--- Kamailio on port {kamailio.port} exited with {code}; log tail:")
            print(kamailio.log()[-8000:])

"""A real ``redis-server`` on 127.0.0.1 for the tests (the ``redis_server`` fixture).

The fixture is in tests/conftest.py, so every test directory has it (the store's
tests, the several-daemons integration test); pytest puts tests/ on ``sys.path`` for
that conftest, so any test module can ``from redis_peer import RedisServer``.  The
server runs in its own process group, keeps nothing
on disk (``--save '' --appendonly no``), and can be stopped and started again on the
same port, as an operator restarting Redis would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds redis-server gets to answer PING
STOP_TIMEOUT = 10.0  # seconds it gets to exit after SIGTERM


def free_tcp_port() -> int:
    """A TCP port the kernel says is free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def redis_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            "redis-server is not installed: scripts/setup test installs it (scripts/test-packages.txt)"
        )
    return path


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server; ``url`` stays the same across ``stop()`` and ``start()``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_tcp_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.log = workdir / f"redis-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start it (again) on its port; return once it answers PING."""
        assert not self.running, "already running"
        command = [
            redis_binary(), "--port", str(self.port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir), "--logfile", str(self.log),
        ]  # fmt: skip
        self._proc = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on {self.port} did not start:\n{self.tail()}")
            time.sleep(0.02)  # polling the port, bounded by the deadline above

    def stop(self) -> None:
        """Stop its process group (SIGTERM, then SIGKILL); the port is free afterwards."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung Redis)."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGCONT)

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except FileNotFoundError:
            return "(no log)"

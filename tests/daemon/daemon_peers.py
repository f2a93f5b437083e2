"""Real-process helpers for the daemon's stop and reload tests (issue 16).

:class:`FocusPeer` is a small UDP UAS on 127.0.0.1 playing an external focus (and
the invitees): INVITE 200 with ``;isfocus``, BYE 200 (counted per Call-ID), 200 to
everything else.  :class:`DaemonProcess` runs ``python -m vidim_daemon run`` in its
own process group, with the worktree's code, and is stopped in a finalizer.
:class:`SipClient` sends requests and collects the final answers by Call-ID.
Every wait is bounded and wakes on what it waits for.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from vidim.sip import (
    Request,
    Response,
    SIPParseError,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)

HOST = "127.0.0.1"
WAIT = 15.0


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


class _UdpPeer:
    """A UDP socket read by a thread; subclasses say what to do with each message."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((HOST, 0))
        self.port = int(self.sock.getsockname()[1])
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
                if self._stopped:
                    return
                continue  # ICMP for an earlier send
            try:
                message = parse_message(data)
            except SIPParseError:
                continue
            with self.cond:
                self.handle(message, addr)
                self.cond.notify_all()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        raise NotImplementedError

    def answer(self, request: Request, status: int, addr: tuple[str, int], **kw: object) -> None:
        if request.method != "ACK":
            response = make_response(request, status, **kw)  # type: ignore[arg-type]
            self.sock.sendto(response.to_bytes(), addr)

    def wait_for(self, predicate: object, what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():  # type: ignore[operator]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout} s")
                self.cond.wait(remaining)

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=2)
        self.sock.close()


class FocusPeer(_UdpPeer):
    """An external focus (and the invitees' phone): 200 to all, BYEs counted."""

    def __init__(self) -> None:
        self.invited: dict[str, str] = {}  # Call-ID -> our To tag
        self.byes: set[str] = set()
        super().__init__()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        if not isinstance(message, Request):
            return
        if message.method == "INVITE" and message.to_addr.tag is None:
            tag = self.invited.setdefault(message.call_id, new_tag())
            contact = f"<sip:conf-{tag}@{HOST}:{self.port}>;isfocus"
            self.answer(message, 200, addr, to_tag=tag, headers=[("Contact", contact)])
        elif message.method == "BYE":
            self.byes.add(message.call_id)
            self.answer(message, 200, addr)
        elif message.method == "SUBSCRIBE":
            self.answer(message, 489, addr, to_tag=new_tag())
        else:
            self.answer(message, 200, addr, to_tag=message.to_addr.tag or new_tag())

    @property
    def uri(self) -> str:
        return f"sip:conference-factory@{HOST}:{self.port}"


class SipClient(_UdpPeer):
    """Sends requests, keeps each final answer by Call-ID; answers the daemon's IMs 200."""

    def __init__(self) -> None:
        self.answers: dict[str, Response] = {}
        self.first_503: float | None = None
        super().__init__()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        if isinstance(message, Request):
            self.answer(message, 200, addr, to_tag=message.to_addr.tag or new_tag())
            return
        if message.status < 200:
            return
        self.answers.setdefault(message.call_id, message)
        if message.status == 503 and self.first_503 is None:
            self.first_503 = time.monotonic()

    def message(
        self,
        port: int,
        invitee: str,
        *,
        user: str | None = None,
        extra: list[tuple[str, str]] = [],  # noqa: B006 - never modified
    ) -> str:
        """A MESSAGE starting a video conference with ``invitee``; its Call-ID."""
        call_id = new_tag() + new_tag()
        request = Request(
            "MESSAGE",
            invitee,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{user or 'u' + call_id[:10]}@localhost>;tag={new_tag()}"),
                ("To", f"<{invitee}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 MESSAGE"),
                ("X-Vidim-Mode", "video"),
                *extra,
            ],
        )
        self.sock.sendto(request.to_bytes(), (HOST, port))
        return call_id

    def options(self, port: int) -> str:
        call_id = new_tag() + new_tag()
        request = Request(
            "OPTIONS",
            f"sip:{HOST}:{port}",
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:probe@{HOST}>;tag={new_tag()}"),
                ("To", f"<sip:{HOST}:{port}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        self.sock.sendto(request.to_bytes(), (HOST, port))
        return call_id

    def wait_answer(self, call_id: str, timeout: float = WAIT) -> Response:
        self.wait_for(lambda: call_id in self.answers, f"answer to {call_id}", timeout)
        return self.answers[call_id]


class DaemonProcess:
    """``python -m vidim_daemon run`` with JSON logs in a file; stopped in :meth:`stop`."""

    def __init__(
        self,
        workdir: Path,
        args: list[str],
        config: str = "",
        *,
        port: int | None = None,
        focus_port: int | None = None,
    ) -> None:
        """``port``/``focus_port``: the ports of a daemon it restarts (default: free ones)."""
        self.port = port or free_port()
        self.focus_port = focus_port or free_port()
        self.config_path = workdir / "vidim.toml"
        self.config_path.write_text(config)
        self.log_path = workdir / "daemon.log"
        self._log = self.log_path.open("wb")
        argv = [sys.executable, "-m", "vidim_daemon", "run", "--config", str(self.config_path),
                "--listen", f"{HOST}:{self.port}", "--focus-listen", f"{HOST}:{self.focus_port}",
                "--no-probe", "--log-json", "--state-dir", str(workdir / "state"),
                *args]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_log(self, words: str, timeout: float = WAIT, start: int = 0) -> dict[str, object]:
        """The first log record from ``start`` on whose message contains ``words``."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records()[start:]:
                if words in str(record.get("message")):
                    return record
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no log line with {words!r}\n{self.dump()}")
            time.sleep(0.05)  # polling a file: the bound is the deadline above

    def wait_ready(self, client: SipClient) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited\n{self.dump()}")
            call_id = client.options(self.port)
            with contextlib.suppress(AssertionError):
                client.wait_answer(call_id, timeout=0.3)
                return
        raise AssertionError(f"the daemon did not answer OPTIONS\n{self.dump()}")

    def signal(self, number: int) -> None:
        os.kill(self.proc.pid, number)

    def dump(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

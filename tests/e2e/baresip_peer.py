"""A baresip 1.0 (Debian ``baresip-core``) softphone driven by a test.

- Headless config in a tmp dir (field notes: ``net_interface 127.0.0.1``, ``ausine`` as
  audio source at 48 kHz stereo or auto-answer never sends 200, ``alsa,null`` player,
  ``fakevideo`` as video source and display, VP8 and, by default, G.711 only).  The audio
  codecs are a choice (``audio_codecs``): only their modules are loaded, so an Opus-only
  peer offers nothing else and the focus must answer Opus.
- Its own tone (``ausine,<Hz>``) as audio source; with ``record`` the ``sndfile`` filter
  dumps what it decodes (and what it encodes) to WAV files in ``sound/`` (1.0 has no
  file player, so this is how a test hears what baresip hears).
- Registered at the proxy (``outbound=``), auto-answering, the service URI as its only
  contact, so ``message <text>`` sends the command form to ``sip:vidim@<domain>``.
- Controlled over ``ctrl_tcp``: netstring-framed JSON; responses and call events
  (``CALL_ESTABLISHED``, ``CALL_CLOSED``) are collected by a reader thread.
- Observed through its SIP trace (``-s``) on stdout, read by another thread: incoming
  MESSAGEs (baresip raises no ctrl_tcp event for them) and the SDP it receives.

Every wait is bounded and wakes on new output (a condition variable), never on a sleep.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sip_peers import stop_process_group

BARESIP = "/usr/bin/baresip"
MODULE_DIR = "/usr/lib/baresip/modules"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SIP_START = re.compile(r"^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3} .*)$")


@dataclass
class SipTraced:
    """One SIP message from baresip's trace: direction, start line, headers, body."""

    direction: str  # "recv" or "send"
    start: str
    headers: dict[str, str]
    body: str

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    @property
    def method(self) -> str | None:
        return None if self.start.startswith("SIP/2.0") else self.start.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        return int(self.start.split()[1]) if self.start.startswith("SIP/2.0") else None


#: The baresip 1.0 module that carries each audio codec (lower-case SDP name).
CODEC_MODULES = {"pcmu": "g711.so", "pcma": "g711.so", "g722": "g722.so", "opus": "opus.so"}


BANNER = re.compile(r"^(?:UDP|TCP|TLS) (\S+) -> (\S+)$")


def parse_trace(text: str, own_port: int) -> list[SipTraced]:
    """Split baresip's ``-s`` trace into messages.

    baresip 1.0 prints ``#``, then ``UDP <src> -> <dst>``, then the message; the
    direction is "recv" when ``<dst>`` is our own SIP port.
    """
    lines = ANSI.sub("", text).replace("\r\n", "\n").split("\n")
    out: list[SipTraced] = []
    i = 0
    direction = "recv"
    while i < len(lines):
        line = lines[i].rstrip("\r")
        banner = BANNER.match(line.strip())
        if banner:
            direction = "recv" if banner.group(2).endswith(f":{own_port}") else "send"
        if not SIP_START.match(line):
            i += 1
            continue
        start = line
        headers: dict[str, str] = {}
        i += 1
        while i < len(lines) and lines[i].strip():
            name, sep, value = lines[i].partition(":")
            if sep:
                name = name.strip()
                headers[name] = (
                    f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
                )
            i += 1
        length = 0
        for key, value in headers.items():
            if key.lower() in ("content-length", "l"):
                with contextlib.suppress(ValueError):
                    length = int(value)
        body_lines: list[str] = []
        i += 1
        size = 0
        while length and i < len(lines) and size < length:
            body_lines.append(lines[i])
            size += len(lines[i]) + 2
            i += 1
        out.append(SipTraced(direction, start, headers, "\r\n".join(body_lines)))
    return out


def netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


@dataclass
class Baresip:
    user: str
    domain: str
    proxy: tuple[str, int]
    workdir: Path
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    video_size: str = "176x144"  # what its fakevideo camera sends (a receiver can tell whose)
    #: ``rtcp_mux yes``: it offers ``a=rtcp-mux`` (RFC 5761) and muxes when answered so.
    rtcp_mux: bool = False
    proc: subprocess.Popen[bytes] | None = None
    _out: list[str] = field(default_factory=list)
    _ctrl: socket.socket | None = None
    _ctrl_msgs: list[dict[str, Any]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _token: int = 0
    audio_codecs: tuple[str, ...] = ("PCMU/8000/1",)
    """What the account offers (baresip's ``audio_codecs=``, e.g. ``opus/48000/2``)."""
    tone: int = 440
    """The frequency (Hz) of the sine it sends (``ausine`` plays 48 kHz stereo)."""
    record: bool = False
    """Dump decoded audio to ``sound/dump-<time>-dec.wav`` (module ``sndfile``)."""
    ptime: int = 20
    """Milliseconds of audio per packet it sends (the account's ``ptime=``)."""
    extra_config: tuple[str, ...] = ()
    """More lines of its config file (e.g. ``opus_stereo no``)."""

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    # -- set-up -----------------------------------------------------------------------
    @property
    def sound_dir(self) -> Path:
        return self.workdir / "sound"

    def write_config(self, service_uri: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        codec_modules = sorted({CODEC_MODULES[c.split("/")[0].lower()] for c in self.audio_codecs})
        recording: list[str] = []
        if self.record:
            self.sound_dir.mkdir(exist_ok=True)
            recording = ["module\t\t\tsndfile.so", f"snd_path\t\t{self.sound_dir}"]
        (self.workdir / "config").write_text(
            "\n".join(
                [
                    "poll_method\t\tepoll",
                    f"sip_listen\t\t127.0.0.1:{self.sip_port}",
                    "net_interface\t\t127.0.0.1",
                    f"rtp_ports\t\t{self.rtp_ports[0]}-{self.rtp_ports[1]}",
                    "audio_player\t\talsa,null",
                    "audio_alert\t\talsa,null",
                    f"audio_source\t\tausine,{self.tone}",
                    "ausrc_srate\t\t48000",
                    "ausrc_channels\t\t2",
                    "video_source\t\tfakevideo,nil",
                    "video_display\t\tfakevideo,nil",
                    f"video_size\t\t{self.video_size}",
                    "video_bitrate\t\t128000",
                    "video_fps\t\t10.00",
                    f"module_path\t\t{MODULE_DIR}",
                    *[f"module\t\t\t{name}" for name in codec_modules],
                    *recording,
                    "module\t\t\tausine.so",
                    "module\t\t\talsa.so",
                    "module\t\t\tfakevideo.so",
                    "module\t\t\tvp8.so",
                    "module\t\t\tsnapshot.so",
                    "module_app\t\taccount.so",
                    "module_app\t\tcontact.so",
                    "module_app\t\tmenu.so",
                    "module_app\t\tctrl_tcp.so",
                    f"ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}",
                    *(["rtcp_mux\t\tyes"] if self.rtcp_mux else []),
                    *self.extra_config,
                    "",
                ]
            )
        )
        outbound = f"sip:{self.proxy[0]}:{self.proxy[1]}"
        (self.workdir / "accounts").write_text(
            f'<{self.aor}>;outbound="{outbound}";regint=300;answermode=auto;'
            f"ptime={self.ptime};"
            f"audio_codecs={','.join(self.audio_codecs)};video_codecs=VP8\n"
        )
        (self.workdir / "contacts").write_text(f'"vidim" <{service_uri}>\n')

    def start(self, service_uri: str) -> None:
        self.write_config(service_uri)
        argv = [BARESIP, "-f", str(self.workdir), "-s", "-t", "600"]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                break
            with self._cond:
                self._out.append(chunk.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "".join(self._out)

    def _wait(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate()
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"baresip {self.user}: {what} not seen within {timeout}s; "
                        f"output tail:\n{''.join(self._out)[-4000:]}"
                    )
                self._cond.wait(remaining)

    def wait_output(self, needle: str, timeout: float = 10.0) -> None:
        self._wait(repr(needle), lambda: needle in "".join(self._out), timeout)

    def connect_ctrl(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise AssertionError(
                        f"baresip ctrl_tcp not reachable on {self.ctrl_port}:\n{self.output()}"
                    ) from None
                # ctrl_tcp listens once the module is loaded: wait for more output
                with self._cond:
                    self._cond.wait(0.05)
        self._ctrl.settimeout(None)
        threading.Thread(target=self._read_ctrl, daemon=True).start()

    def _read_ctrl(self) -> None:
        assert self._ctrl is not None
        buffer = b""
        while True:
            try:
                chunk = self._ctrl.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b":" in buffer:
                size_text, _, rest = buffer.partition(b":")
                size = int(size_text)
                if len(rest) < size + 1:
                    break
                payload, buffer = rest[:size], rest[size + 1 :]
                with self._cond:
                    self._ctrl_msgs.append(json.loads(payload))
                    self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a baresip command over ctrl_tcp and return its response."""
        assert self._ctrl is not None
        self._token += 1
        token = str(self._token)
        self._ctrl.sendall(netstring({"command": command, "params": params, "token": token}))

        def response() -> dict[str, Any] | None:
            for msg in self._ctrl_msgs:
                if msg.get("response") and msg.get("token") == token:
                    return msg
            return None

        found: dict[str, Any] = self._wait(f"response to {command}", response, timeout)
        return found

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        def event() -> dict[str, Any] | None:
            for msg in self._ctrl_msgs:
                if msg.get("event") and msg.get("type") == kind:
                    return msg
            return None

        found: dict[str, Any] = self._wait(f"event {kind}", event, timeout)
        return found

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self._ctrl_msgs if m.get("event")]

    # -- the SIP trace -------------------------------------------------------------------
    def traced(self) -> list[SipTraced]:
        return parse_trace(self.output(), self.sip_port)

    def wait_sip(
        self, predicate: Callable[[SipTraced], bool], what: str, timeout: float = 10.0
    ) -> SipTraced:
        def find() -> SipTraced | None:
            for message in parse_trace("".join(self._out), self.sip_port):
                if predicate(message):
                    return message
            return None

        found: SipTraced = self._wait(what, find, timeout)
        return found

    def wait_registered(self, timeout: float = 10.0) -> None:
        self.wait_sip(
            lambda m: m.status == 200 and (m.header("CSeq") or "").endswith("REGISTER"),
            "200 to REGISTER",
            timeout,
        )

    def decoded_recordings(self) -> list[Path]:
        """The WAV files of what it decoded, one per audio stream (complete once the
        call is closed: libsndfile writes the header's sizes on close)."""
        return sorted(self.sound_dir.glob("dump-*-dec.wav"))

    def invitation(self, timeout: float = 10.0) -> SipTraced:
        """The IM inviting it to a conference (its ``X-Vidim-Conference`` says where)."""
        return self.wait_sip(
            lambda m: m.direction == "recv" and m.method == "MESSAGE"
            and m.header("X-Vidim-Conference") is not None,
            "invitation MESSAGE", timeout,
        )  # fmt: skip

    def invite_answer(self, timeout: float = 10.0) -> SipTraced:
        """The 200 to the INVITE it sent (the focus's SDP answer is its body)."""
        return self.wait_sip(
            lambda m: m.direction == "recv" and m.status == 200
            and (m.header("CSeq") or "").endswith("INVITE"),
            "200 to its INVITE", timeout,
        )  # fmt: skip

    def join_invitation(self) -> SipTraced:
        """Dial the conference of its invitation; once in, the 200 that answered it."""
        value = self.invitation().header("X-Vidim-Conference") or ""
        self.command("dial", value[1:].partition(">")[0])  # <uri>;id=...;mode=...
        self.wait_event("CALL_ESTABLISHED")
        return self.invite_answer()

    def stop(self) -> int | None:
        if self._ctrl is not None:
            with contextlib.suppress(OSError):
                self._ctrl.close()
        if self.proc is None:
            return None
        return stop_process_group(self.proc)

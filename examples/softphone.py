#!/usr/bin/env python3
"""A small pjsua2 softphone for trying vidim (and for driving it from tests).

Needs ``pip install pjsua2-python`` (PJSIP 2.15 wheel; the sdist named ``pjsua2`` does
not build).  Null audio device: it sends silence, plays nothing, needs no sound card.

Try it with the Kamailio example (examples/kamailio/kamailio.cfg on 127.0.0.1:5060) and
``vidim-daemon run --proxy sip:127.0.0.1:5060 --domain localhost --no-probe``::

    # bob and carol: register, print IMs, dial the conference they are invited to
    python examples/softphone.py --user bob --proxy sip:127.0.0.1:5060 --auto-join
    python examples/softphone.py --user carol --proxy sip:127.0.0.1:5060 --auto-join
    # alice: the header form, bob in video and carol in audio
    python examples/softphone.py --user alice --proxy sip:127.0.0.1:5060 \\
        --mode video --to sip:bob@localhost --invite 'sip:carol@localhost;mode=audio'
    # ... later, end it (the command form, to the service URI sip:vidim@localhost)
    python examples/softphone.py --user alice --proxy sip:127.0.0.1:5060 --command /end

Without a proxy (``--no-register``) the account is a direct one (``sip:USER@HOST:PORT``)
and requests go where their URI says.

Audio for tests and demos: ``--tone HZ`` sends a continuous sine tone (pjsua2
``ToneGenerator``) to every call instead of the null device's silence; ``--record FILE``
records what every call receives (``AudioMediaRecorder``, a 16 kHz mono WAV) from the
first call's audio on, or in test mode from the ``record`` command on (so that a test
chooses when), until the ``stop_recording`` command or the exit; ``--codec NAME``
(repeatable: PCMU, PCMA, G722, ...) offers only those codecs.

Test mode (``--json``): one JSON command per line on stdin, one JSON event per line on
stdout, so a test can run each phone in its own process (pjsua2 allows one Endpoint per
process).  Commands::

    {"cmd": "register"}                       re-REGISTER (the account registers on start)
    {"cmd": "message", "to": URI, "body": TEXT, "headers": {NAME: VALUE},
     "content_type": "text/plain"}
    {"cmd": "call", "uri": URI, "headers": {}} dial (e.g. the conference URI)
    {"cmd": "hangup"} / {"cmd": "hangup", "call": N}
    {"cmd": "stats"}                          RTP statistics of every call
    {"cmd": "record"}                         start recording to the --record file now
    {"cmd": "stop_recording"}                 finish the --record WAV file now
    {"cmd": "quit"}                           hang up, unregister, exit 0

Events (always with "event"): ready, registered (code), message_status (to, code,
reason, headers), im_received (from, to, body, content_type, headers), call_state
(call, state, code, reason), call_response (call, status, headers: final
responses to INVITE), call_sdp (call, kind: "remote_answer" / "remote_offer" /
"local", sdp), bye_received (call), recording (path), recording_stopped (path), stats
(calls: [{call, state, streams: [{index, type, rx_packets, tx_packets}]}]), invitation
(conference_uri, mode, id), error (text).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

try:
    import pjsua2 as pj
except ImportError:  # pragma: no cover - a hint for people trying the example
    sys.exit("examples/softphone.py needs pjsua2: pip install pjsua2-python")

CONFERENCE_HEADER = re.compile(r"<([^>]+)>\s*(.*)")
#: Media states in which a call's audio arrives: active, or "held" by a remote that only
#: sends (the focus answers a ``watch`` participant ``sendonly``).
RECEIVING = (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)


# -- small helpers -------------------------------------------------------------------
def parse_raw_message(raw: str) -> tuple[str, dict[str, str], str]:
    """(first line, headers by name as written, body) of a raw SIP message.

    Repeated headers are joined with ", "; folded lines are unfolded.
    """
    head, _, body = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    last = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        last = name
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return lines[0] if lines else "", headers, body


def header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_invitation(value: str) -> dict[str, str] | None:
    """``<sip:conf-...;key=...>;mode=video;id=...`` -> {conference_uri, mode, id}."""
    match = CONFERENCE_HEADER.match(value.strip())
    if match is None:
        return None
    out = {"conference_uri": match.group(1)}
    for param in match.group(2).split(";"):
        name, _, val = param.strip().partition("=")
        if name:
            out[name.lower()] = val
    return out


def wav_finished(path: str) -> bool:
    """Whether a WAV file's RIFF header counts all of its bytes (its writer closed it)."""
    try:
        with open(path, "rb") as wav:
            head = wav.read(8)
            size = os.fstat(wav.fileno()).st_size
    except OSError:
        return False
    return head[:4] == b"RIFF" and int.from_bytes(head[4:8], "little") == size - 8


def free_even_port(host: str) -> int:
    """An even UDP port (RTP) with the odd one above it free (RTCP).

    Above the focus's default range (10000-20000).
    """
    for _ in range(200):
        port = random.randrange(20000, 39998, 2)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp,
        ):
            try:
                rtp.bind((host, port))
                rtcp.bind((host, port + 1))
            except OSError:
                continue
        return port
    return 0


# -- the phone -----------------------------------------------------------------------
class Phone:
    def __init__(self, args: argparse.Namespace, emit: Callable[..., None]) -> None:
        self.args = args
        self.emit = emit
        self.calls: dict[int, PhoneCall] = {}  # keep every Call referenced (pjsua2 pitfall)
        self.buddies: dict[str, pj.Buddy] = {}
        self.pending_im: list[str] = []
        self.registered = False
        self.stopping = False
        self.ep = pj.Endpoint()
        # pjlib prints its start-up lines on fd 1 before libInit applies the log levels:
        # send them to stderr so that stdout carries only our own lines.
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            self._init_library(args)
        finally:
            sys.stdout.flush()
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
        self.ep.audDevManager().setNullDev()
        self._set_codecs(args.codec)
        self.tone: pj.ToneGenerator | None = self._tone(args.tone) if args.tone else None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.sip_port = self.ep.transportGetInfo(0).localName.rsplit(":", 1)[1]
        self.account = PhoneAccount(self)
        self.account.create(self._account_config())
        self.uri = self._identity()
        self.emit("ready", uri=self.uri, sip_port=int(self.sip_port), pid=os.getpid())

    def _init_library(self, args: argparse.Namespace) -> None:
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # events are polled from the main thread: no foreign threads
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4  # the wheel's real limit
        cfg.uaConfig.userAgent = f"vidim-softphone/{args.user} (pjsua2)"
        cfg.logConfig.level = 5 if args.pjsip_log else 0
        cfg.logConfig.consoleLevel = 0  # keep stdout for our own lines
        if args.pjsip_log:
            cfg.logConfig.filename = args.pjsip_log
        cfg.medConfig.noVad = True  # send RTP (silence) continuously, so streams can be counted
        cfg.medConfig.hasIoqueue = True
        cfg.medConfig.threadCnt = 1
        self.ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = args.port
        tcfg.boundAddress = args.bind
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.ep.libStart()

    def _set_codecs(self, only: list[str]) -> None:
        """PCMU first; with ``--codec``, only the codecs named (by encoding name)."""
        if not only:
            with contextlib.suppress(pj.Error):
                self.ep.codecSetPriority("PCMU/8000", 255)
            return
        wanted = [name.lower() for name in only]
        for info in self.ep.codecEnum2():
            name = info.codecId.split("/")[0].lower()
            priority = 255 - wanted.index(name) if name in wanted else 0
            self.ep.codecSetPriority(info.codecId, priority)

    def _tone(self, frequency: float) -> pj.ToneGenerator:
        """A sine tone that never stops (tones of 30 s, looped)."""
        tone = pj.ToneDesc()
        tone.freq1 = int(frequency)
        tone.freq2 = 0
        tone.on_msec = 30000
        tone.off_msec = 0
        tones = pj.ToneDescVector()
        tones.append(tone)
        generator = pj.ToneGenerator()
        generator.createToneGenerator()
        generator.play(tones, True)
        return generator

    def record(self) -> None:
        """Record what every call receives, from now on, to the ``--record`` file."""
        if not self.args.record:
            raise RuntimeError("no --record FILE given")
        self.stop_recording()
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(self.args.record)
        for call in self.calls.values():
            call.connect_audio()
        self.emit("recording", path=self.args.record)

    def stop_recording(self) -> None:
        """Finish the WAV file (its header is written when the recorder is destroyed)."""
        if self.recorder is not None:
            self.recorder = None  # the C++ destructor queues the file's closing
            # The media clock closes it (and writes the header's sizes) a tick or two later:
            # report it once the RIFF header gives the file's length (bounded).
            deadline = time.monotonic() + 2.0
            while not wav_finished(self.args.record) and time.monotonic() < deadline:
                self.poll(10)
            self.emit("recording_stopped", path=self.args.record)

    def _identity(self) -> str:
        if self.args.no_register:
            return f"sip:{self.args.user}@{self.args.bind}:{self.sip_port}"
        return f"sip:{self.args.user}@{self.args.domain}"

    def _account_config(self) -> pj.AccountConfig:
        args = self.args
        acfg = pj.AccountConfig()
        acfg.idUri = self._identity()
        if not args.no_register:
            acfg.regConfig.registrarUri = args.registrar or f"sip:{args.domain}"
            acfg.regConfig.registerOnAdd = True
            acfg.regConfig.timeoutSec = 300
            acfg.regConfig.retryIntervalSec = 1
        if args.proxy:
            proxy = args.proxy if ";lr" in args.proxy else args.proxy + ";lr"
            acfg.sipConfig.proxies.append(proxy)
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.natConfig.sipOutboundUse = 0
        acfg.mediaConfig.transportConfig.boundAddress = args.bind
        acfg.mediaConfig.transportConfig.publicAddress = args.bind
        acfg.mediaConfig.transportConfig.port = args.rtp_port or free_even_port(args.bind)
        acfg.mediaConfig.transportConfig.portRange = 200
        if args.srtp != "disabled":
            # SDES keys only (no DTLS-SRTP); over plain SIP, as a lab does (in
            # production the keys need TLS signalling, docs/security.md).
            acfg.mediaConfig.srtpUse = _SRTP_USE[args.srtp]
            acfg.mediaConfig.srtpSecureSignaling = 0
            acfg.mediaConfig.srtpOpt.keyings.clear()
            acfg.mediaConfig.srtpOpt.keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
        return acfg

    # -- actions --------------------------------------------------------------------
    def buddy(self, uri: str) -> pj.Buddy:
        found = self.buddies.get(uri)
        if found is None:
            bcfg = pj.BuddyConfig()
            bcfg.uri = uri
            bcfg.subscribe = False
            found = pj.Buddy()
            found.create(self.account, bcfg)
            self.buddies[uri] = found
        return found

    def send_message(
        self, to: str, body: str, headers: dict[str, str] | None = None,
        content_type: str = "text/plain",
    ) -> None:  # fmt: skip
        prm = pj.SendInstantMessageParam()
        prm.content = body
        prm.contentType = content_type
        for name, value in (headers or {}).items():
            hdr = pj.SipHeader()
            hdr.hName = name
            hdr.hValue = value
            prm.txOption.headers.append(hdr)
        self.pending_im.append(to)
        self.buddy(to).sendInstantMessage(prm)

    def call(self, uri: str, headers: dict[str, str] | None = None) -> int:
        if len(self.calls) >= 4:
            raise RuntimeError("this pjsua2 wheel handles at most 4 calls per process")
        call = PhoneCall(self, self.account)
        prm = pj.CallOpParam(True)
        for name, value in (headers or {}).items():
            hdr = pj.SipHeader()
            hdr.hName = name
            hdr.hValue = value
            prm.txOption.headers.append(hdr)
        call.makeCall(uri, prm)
        call_id = call.getId()
        self.calls[call_id] = call
        self.emit("call_started", call=call_id, uri=uri)
        return call_id

    def hangup(self, call_id: int | None = None) -> None:
        for cid, call in list(self.calls.items()):
            if call_id is not None and cid != call_id:
                continue
            with contextlib.suppress(pj.Error):
                call.hangup(pj.CallOpParam(True))

    def stats(self) -> list[dict[str, Any]]:
        out = []
        for cid, call in self.calls.items():
            streams = []
            try:
                info = call.getInfo()
            except pj.Error:
                continue
            for media in info.media:
                entry: dict[str, Any] = {
                    "index": media.index,
                    "type": {pj.PJMEDIA_TYPE_AUDIO: "audio", pj.PJMEDIA_TYPE_VIDEO: "video"}.get(
                        media.type, str(media.type)
                    ),
                    "status": media.status,
                }
                active = media.status in RECEIVING
                if media.type == pj.PJMEDIA_TYPE_AUDIO and active:
                    with contextlib.suppress(pj.Error):
                        stat = call.getStreamStat(media.index)
                        entry["rx_packets"] = stat.rtcp.rxStat.pkt
                        entry["tx_packets"] = stat.rtcp.txStat.pkt
                streams.append(entry)
            out.append({"call": cid, "state": info.stateText, "streams": streams})
        return out

    def poll(self, ms: int) -> None:
        self.ep.libHandleEvents(ms)

    def shutdown(self) -> None:
        """Hang up, unregister, destroy the library (bounded)."""
        self.stopping = True
        with contextlib.suppress(pj.Error):
            self.ep.hangupAllCalls()
        deadline = time.monotonic() + 3.0
        while self.calls and time.monotonic() < deadline:
            self.poll(20)
        if self.registered:
            with contextlib.suppress(pj.Error):
                self.account.setRegistration(False)
            deadline = time.monotonic() + 2.0
            while self.registered and time.monotonic() < deadline:
                self.poll(20)
        self.calls.clear()
        self.buddies.clear()
        self.stop_recording()
        self.tone = None
        with contextlib.suppress(pj.Error):
            self.account.shutdown()
        self.ep.libDestroy()


class PhoneAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 - pjsua2 API
        info = self.getInfo()
        self.phone.registered = bool(info.regIsActive)
        self.phone.emit(
            "registered" if info.regIsActive else "unregistered",
            code=prm.code, reason=prm.reason, expires=info.regExpiresSec,
        )  # fmt: skip

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        call = PhoneCall(self.phone, self, prm.callId)
        self.phone.calls[prm.callId] = call  # referenced, or the caller gets 603
        _first, headers, body = parse_raw_message(prm.rdata.wholeMsg)
        self.phone.emit("incoming_call", call=prm.callId, from_=header(headers, "From"))
        if body:
            self.phone.emit("call_sdp", call=prm.callId, kind="remote_offer", sdp=body)
        answer = pj.CallOpParam()
        answer.statusCode = 200
        call.answer(answer)

    def onInstantMessage(self, prm: pj.OnInstantMessageParam) -> None:  # noqa: N802
        _first, headers, _body = parse_raw_message(prm.rdata.wholeMsg)
        self.phone.emit(
            "im_received", from_=prm.fromUri, to=prm.toUri, body=prm.msgBody,
            content_type=prm.contentType, headers=headers,
        )  # fmt: skip
        conference = header(headers, "X-Vidim-Conference")
        invitation = parse_invitation(conference) if conference else None
        if invitation is not None:
            self.phone.emit("invitation", **invitation)
            if self.phone.args.auto_join and not self.phone.stopping:
                self.phone.call(invitation["conference_uri"])

    def onInstantMessageStatus(self, prm: pj.OnInstantMessageStatusParam) -> None:  # noqa: N802
        headers: dict[str, str] = {}
        with contextlib.suppress(Exception):
            if prm.rdata.wholeMsg:
                _first, headers, _body = parse_raw_message(prm.rdata.wholeMsg)
        with contextlib.suppress(ValueError):
            self.phone.pending_im.remove(prm.toUri)
        self.phone.emit(
            "message_status", to=prm.toUri, code=prm.code, reason=prm.reason,
            body=prm.msgBody, headers=headers,
        )  # fmt: skip


class PhoneCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Phone, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.phone = phone
        self.seen: set[str] = set()

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802
        self._inspect(prm.e)
        info = self.getInfo()
        self.phone.emit(
            "call_state", call=info.id, state=info.stateText, code=info.lastStatusCode,
            reason=info.lastReason, remote=info.remoteUri,
        )  # fmt: skip
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.phone.calls.pop(info.id, None)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        phone = self.phone
        if phone.args.record and phone.recorder is None and not phone.args.json:
            phone.record()  # the CLI records from the first call's audio on
        try:
            self.connect_audio()
        except Exception as error:  # pjsua2 would swallow it in this callback
            why = f"{type(error).__name__}: {error}"
            phone.emit("error", text=f"connecting the call's audio: {why}")

    def connect_audio(self) -> None:
        """The tone (or the null capture device) to the call; the call to playback and recorder."""
        phone = self.phone
        adm = phone.ep.audDevManager()
        info = self.getInfo()  # kept: its media vector dies with it (SWIG)
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in RECEIVING:
                audio = self.getAudioMedia(media.index)
                source = phone.tone if phone.tone is not None else adm.getCaptureDevMedia()
                source.startTransmit(audio)
                audio.startTransmit(adm.getPlaybackDevMedia())
                if phone.recorder is not None:
                    audio.startTransmit(phone.recorder)
                phone.emit("audio_connected", call=self.getId(), index=media.index,
                           status=media.status, recording=phone.recorder is not None)  # fmt: skip

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:  # noqa: N802
        # Note: this wheel has no video.  It offers audio only and answers a video offer
        # with m=video 0; it cannot be made to offer video (videoCount must be 0, and
        # with two media slots wholeSdp arrives empty here), so tests use baresip for video.
        self.phone.emit("call_sdp", call=self.getId(), kind="local", sdp=prm.sdp.wholeSdp)

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:  # noqa: N802
        self._inspect(prm.e)

    def _inspect(self, event: pj.SipEvent) -> None:
        """Report a received BYE, and final responses to INVITE (with the answer SDP).

        pjsua2 shows a final failure of the INVITE in onCallState, a 2xx or an incoming
        BYE in onCallTsxState: both land here, each message reported once.
        """
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        state = event.body.tsxState
        if state.type != pj.PJSIP_EVENT_RX_MSG:
            return
        raw = state.src.rdata.wholeMsg
        first, headers, body = parse_raw_message(raw)
        key = f"{first}|{header(headers, 'CSeq')}|{header(headers, 'Via')}"
        if key in self.seen:
            return
        self.seen.add(key)
        if first.startswith("BYE "):
            self.phone.emit("bye_received", call=self.getId(), from_=header(headers, "From"))
        elif first.startswith("SIP/2.0 ") and (header(headers, "CSeq") or "").endswith("INVITE"):
            status = int(first.split()[1])
            if status < 200:
                return
            self.phone.emit(
                "call_response", call=self.getId(), status=status, headers=headers
            )  # fmt: skip
            if status < 300 and body.strip():
                self.phone.emit(
                    "call_sdp", call=self.getId(), kind="remote_answer", sdp=body,
                    contact=header(headers, "Contact"),
                )  # fmt: skip


# -- front ends ----------------------------------------------------------------------
def json_emitter() -> Callable[..., None]:
    def emit(event: str, **fields: Any) -> None:
        record = {"event": event, "t": round(time.time(), 3)}
        record.update({key.rstrip("_"): value for key, value in fields.items()})
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    return emit


def text_emitter() -> Callable[..., None]:
    def emit(event: str, **fields: Any) -> None:
        fields = {key.rstrip("_"): value for key, value in fields.items()}
        if event == "im_received":
            print(f"\n<< IM from {fields['from']}: {fields['body']}")
            conference = header(fields["headers"], "X-Vidim-Conference")
            if conference:
                print(f"   X-Vidim-Conference: {conference}")
        elif event == "message_status":
            warning = header(fields["headers"], "Warning")
            extra = f" ({warning})" if warning else ""
            print(f">> MESSAGE to {fields['to']}: {fields['code']} {fields['reason']}{extra}")
        elif event in ("call_sdp", "stats"):
            return
        else:
            print(f"-- {event}: " + ", ".join(f"{k}={v}" for k, v in fields.items()))
        sys.stdout.flush()

    return emit


def handle_command(phone: Phone, command: dict[str, Any]) -> bool:
    """Run one JSON command; False means quit."""
    cmd = command.get("cmd")
    if cmd == "register":
        phone.account.setRegistration(True)
    elif cmd == "message":
        phone.send_message(
            command["to"], command.get("body", ""), command.get("headers"),
            command.get("content_type", "text/plain"),
        )  # fmt: skip
    elif cmd == "call":
        phone.call(command["uri"], command.get("headers"))
    elif cmd == "hangup":
        phone.hangup(command.get("call"))
    elif cmd == "stats":
        phone.emit("stats", calls=phone.stats())
    elif cmd == "record":
        phone.record()
    elif cmd == "stop_recording":
        phone.stop_recording()
    elif cmd == "quit":
        return False
    else:
        phone.emit("error", text=f"unknown command {cmd!r}")
    return True


def run_json(phone: Phone, stop: list[bool]) -> None:
    fd = sys.stdin.fileno()
    buffer = b""
    while not stop[0]:
        phone.poll(10)
        readable, _, _ = select.select([fd], [], [], 0)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return  # stdin closed: the driver is gone
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                if not handle_command(phone, json.loads(line)):
                    return
            except Exception as error:  # report and keep serving the test
                phone.emit("error", text=f"{type(error).__name__}: {error}")


def run_cli(phone: Phone, args: argparse.Namespace, stop: list[bool]) -> None:
    deadline = time.monotonic() + args.duration if args.duration else None
    if not args.no_register:
        wait = time.monotonic() + 10
        while not phone.registered and time.monotonic() < wait and not stop[0]:
            phone.poll(20)
        if not phone.registered:
            print("-- not registered after 10 s; going on anyway", file=sys.stderr)
    if args.mode:
        if not args.to:
            sys.exit("--mode needs --to sip:bob@...")
        headers = {"X-Vidim-Mode": args.mode}
        if args.invite:
            headers["X-Vidim-Invite"] = ", ".join(
                f"<{uri.split(';', 1)[0]}>" + (f";{uri.split(';', 1)[1]}" if ";" in uri else "")
                for uri in args.invite
            )
        phone.send_message(args.to, args.text or f"Let's talk ({args.mode})", headers)
    if args.command:
        phone.send_message(args.service or f"sip:vidim@{args.domain}", args.command)
    if args.call:
        phone.call(args.call)
    while not stop[0]:
        phone.poll(20)
        if deadline is not None and time.monotonic() >= deadline:
            return
        if args.exit_when_sent and not phone.pending_im and not phone.calls:
            return


#: pjsua's srtp_use per --srtp value.
_SRTP_USE = {
    "disabled": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", required=True, help="user part, e.g. alice")
    parser.add_argument("--domain", default="localhost", help="SIP domain [localhost]")
    parser.add_argument("--proxy", help="outbound proxy / IM server, e.g. sip:127.0.0.1:5060")
    parser.add_argument("--registrar", help="registrar URI [sip:<domain>]")
    parser.add_argument("--no-register", action="store_true",
                        help="direct account sip:USER@BIND:PORT, no REGISTER")  # fmt: skip
    parser.add_argument("--bind", default="127.0.0.1", help="local address [127.0.0.1]")
    parser.add_argument("--port", type=int, default=0, help="SIP UDP port [any]")
    parser.add_argument("--rtp-port", type=int, default=0, help="first RTP port [random]")
    parser.add_argument("--mode", choices=("video", "audio", "watch", "chat"),
                        help="send the header form (X-Vidim-Mode) to --to")  # fmt: skip
    parser.add_argument("--to", help="Request-URI of the header-form MESSAGE (first invitee)")
    parser.add_argument("--invite", action="append", default=[], metavar="URI[;mode=M]",
                        help="more invitees (X-Vidim-Invite), repeatable")  # fmt: skip
    parser.add_argument("--text", help="text of the header-form MESSAGE")
    parser.add_argument("--command", help="send this text (e.g. /end) to the service URI")
    parser.add_argument("--service", help="service URI [sip:vidim@<domain>]")
    parser.add_argument("--call", metavar="URI", help="dial this URI")
    parser.add_argument("--auto-join", action="store_true",
                        help="dial the conference URI of every invitation received")  # fmt: skip
    parser.add_argument("--duration", type=float, default=0, help="exit after N seconds [never]")
    parser.add_argument("--exit-when-sent", action="store_true",
                        help="exit once every MESSAGE is answered and no call is up")  # fmt: skip
    parser.add_argument("--tone", type=float, metavar="HZ",
                        help="send a sine tone of HZ to every call (not silence)")  # fmt: skip
    parser.add_argument("--record", metavar="FILE.wav",
                        help="record what every call receives to this WAV file")  # fmt: skip
    parser.add_argument("--codec", action="append", default=[], metavar="NAME",
                        help="offer only this audio codec (PCMU, PCMA, G722...)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="JSON lines on stdin/stdout (tests)")
    parser.add_argument("--pjsip-log", metavar="FILE", help="PJSIP log (level 5) to FILE")
    parser.add_argument("--srtp", choices=tuple(_SRTP_USE), default="disabled",
                        help="SRTP with SDES keys (RTP/SAVP) [disabled]")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emit = json_emitter() if args.json else text_emitter()
    stop = [False]

    def on_signal(_signum: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    phone = Phone(args, emit)
    try:
        if args.json:
            run_json(phone, stop)
        else:
            run_cli(phone, args, stop)
    finally:
        phone.shutdown()
        emit("exited")
    return 0


if __name__ == "__main__":
    sys.exit(main())

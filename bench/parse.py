"""Parse/serialize throughput of vidim's SIP parser, next to sippy's, in one run.

Four messages as Kamailio and pjsua2 send them (a MESSAGE with vidim's custom
headers, an INVITE with an audio+video SDP offer, the 200 OK answering it and a
NOTIFY with an RFC 4575 conference-info body) are parsed, one by one and as a
mix, in two ways:

* read:       parse, then read From, To, Call-ID, CSeq and the top Via;
* read+write: the same, then serialize the message back to bytes.

sippy (PyPI ``sippy``, the SIP stack of the Sippy B2BUA) is measured the same
way when it can be imported.  It parses header values lazily, so its side calls
``getHFBody()`` on the five headers (which runs their parsers) and reads the
values from the parsed objects.  It works on ``str``: the bytes are decoded
inside the timed loop, as its transaction manager does, and its output is
encoded back to bytes, so both sides go bytes to bytes.

sippy is never a dependency of vidim: ``bench/run-parse`` makes ``bench/.venv``
with sippy and vidim in it and runs this script there.  Run directly (e.g. in
the project's .venv) the script measures vidim alone.

    bench/run-parse                              # the table
    bench/run-parse --write docs/performance.md  # and rewrite its results section
    python bench/parse.py --quick                # smoke run, a few ms per cell
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidim.sip import Request, SipURI, parse_message

# sippy lives only in bench/.venv; without it the vidim columns still run.  Imported
# by name, so that mypy reads this file the same with sippy (no stubs) or without it.
_SippyRequest: Any = None
_SippyResponse: Any = None
try:
    _SippyRequest = importlib.import_module("sippy.SipRequest").SipRequest
    _SippyResponse = importlib.import_module("sippy.SipResponse").SipResponse
except ImportError:  # pragma: no cover - depends on the environment
    pass

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:  # loaded as a module (tests), not run as a script
    sys.path.insert(0, str(ROOT / "bench"))
from doc_section import replace_section  # noqa: E402 - bench/doc_section.py

RESULTS_BEGIN = "<!-- bench/parse.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/parse.py results: end -->"
TARGET_RATIO = 3.0

# --------------------------------------------------------------------------- messages


def _alice_via(branch: str) -> str:
    """pjsua2's Via (rport asked) as the first proxy completes it (RFC 3581)."""
    return (
        "Via: SIP/2.0/UDP 198.51.100.23:5060;rport=5060;received=198.51.100.23"
        f";branch=z9hG4bKPj{branch}"
    )


def _message(head: str, body: str = "") -> bytes:
    """Build a datagram: ``head`` lines (LF here) joined by CRLF, Content-Length computed."""
    payload = body.replace("\n", "\r\n").encode()
    lines = head.strip("\n").split("\n")
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


# A pjsua2 user's MESSAGE asking for a video conference, after Kamailio
# (record-routed, its Via on top, rport/received filled in).
MESSAGE = _message(
    """
MESSAGE sip:bob@example.com SIP/2.0
Record-Route: <sip:203.0.113.10;lr;ftag=ZcXuEsnN3fIlrwoqdsAq-5VxE1eDyM2e;did=0b6.2e31>
Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK4f7b.9d2cfa3c52b2c2f3e4a4a6a3d1c5b8e7.0
{alice_via}
Max-Forwards: 69
From: "Alice Liddell" <sip:alice@example.com>;tag=ZcXuEsnN3fIlrwoqdsAq-5VxE1eDyM2e
To: <sip:bob@example.com>
Call-ID: 0lXnCL7gWvQ2YWl8u3cT4rHjVRmqeMzG
CSeq: 31587 MESSAGE
Route: <sip:vidim.example.com:5070;transport=udp;lr>
P-Asserted-Identity: "Alice Liddell" <sip:alice@example.com>
User-Agent: vidim-softphone/0.1 (pjsua2 2.14.1)
X-Vidim-Mode: video
X-Vidim-Invite: <sip:carol@example.com>;mode=audio
Content-Type: text/plain;charset=UTF-8
""".format(alice_via=_alice_via("gxy0pLkbmWv4Gz3P1o9yFfN2pRz1Ba4K")),
    "Bob, let's switch to video. Carol joins by phone.",
)

_SDP_OFFER = """v=0
o=- 3917425362 3917425362 IN IP4 198.51.100.23
s=pjmedia
b=AS:2112
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 96 9 8 0 101
c=IN IP4 198.51.100.23
a=rtcp:4001 IN IP4 198.51.100.23
a=sendrecv
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
m=video 4002 RTP/AVP 97
c=IN IP4 198.51.100.23
b=TIAS:2000000
a=rtcp:4003 IN IP4 198.51.100.23
a=sendrecv
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1
a=rtcp-fb:* nack pli
"""

_SDP_ANSWER = """v=0
o=- 3917425390 3917425391 IN IP4 192.0.2.40
s=pjmedia
b=AS:2112
t=0 0
m=audio 4010 RTP/AVP 96 101
c=IN IP4 192.0.2.40
a=rtcp:4011 IN IP4 192.0.2.40
a=sendrecv
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
m=video 4012 RTP/AVP 97
c=IN IP4 192.0.2.40
a=rtcp:4013 IN IP4 192.0.2.40
a=sendrecv
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1
a=rtcp-fb:* nack pli
"""

_DIALOG_VIAS = """
Via: SIP/2.0/UDP 203.0.113.20;branch=z9hG4bK8a1e.5a4f3b2c1d0e9f8a7b6c5d4e3f2a1b0c.0
Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK8a1e.0f1e2d3c4b5a69788796a5b4c3d2e1f0.0
{alice_via}
""".format(alice_via=_alice_via("3Xf9d2hS0aQ7nZk1cV5bM8wLr4tYe6uI"))

_DIALOG_IDS = """
From: "Alice Liddell" <sip:alice@example.com>;tag=Kq2sW0sV8s9aLJvVvQkU1m2PjvVQ0Hn5
To: <sip:bob@example.com>{to_tag}
Call-ID: 3c8Yq2Gk8tR5vP1xZ0bN7mL4jH6fD9sA
CSeq: 11852 INVITE
"""

_ALLOW = (
    "Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE,"
    " OPTIONS"
)

# pjsua2's INVITE (audio+video offer) after two Kamailio hops.
INVITE = _message(
    "INVITE sip:bob@192.0.2.40:5060;transport=udp SIP/2.0"
    + _DIALOG_VIAS
    + """Record-Route: <sip:203.0.113.20;lr;ftag=Kq2sW0sV8s9aLJvVvQkU1m2PjvVQ0Hn5>
Record-Route: <sip:203.0.113.10;lr;ftag=Kq2sW0sV8s9aLJvVvQkU1m2PjvVQ0Hn5;nat=yes>
Max-Forwards: 68"""
    + _DIALOG_IDS.format(to_tag="")
    + """Contact: "Alice Liddell" <sip:alice@198.51.100.23:5060;ob>
"""
    + _ALLOW
    + """
Supported: replaces, 100rel, timer, norefersub, trickle-ice
Session-Expires: 1800
Min-SE: 90
User-Agent: vidim-softphone/0.1 (pjsua2 2.14.1)
Content-Type: application/sdp
""",
    _SDP_OFFER,
)

# The callee's (pjsua2) 200 OK with the SDP answer, as it arrives back at Alice.
OK = _message(
    "SIP/2.0 200 OK"
    + _DIALOG_VIAS
    + """Record-Route: <sip:203.0.113.20;lr;ftag=Kq2sW0sV8s9aLJvVvQkU1m2PjvVQ0Hn5>
Record-Route: <sip:203.0.113.10;lr;ftag=Kq2sW0sV8s9aLJvVvQkU1m2PjvVQ0Hn5;nat=yes>"""
    + _DIALOG_IDS.format(to_tag=";tag=f1d8b1c6-3a55-4c1e-9d43-7f0e2b6a9c01")
    + """Contact: <sip:bob@192.0.2.40:5060;ob>
"""
    + _ALLOW
    + """
Supported: replaces, 100rel, timer, norefersub
Session-Expires: 1800;refresher=uac
Require: timer
Server: vidim-softphone/0.1 (pjsua2 2.14.1)
Content-Type: application/sdp
""",
    _SDP_ANSWER,
)

_CONFERENCE_INFO = """<?xml version="1.0" encoding="UTF-8"?>
<conference-info xmlns="urn:ietf:params:xml:ns:conference-info"
    entity="sip:conf-7f3a@vidim.example.com" state="full" version="3">
  <conference-description>
    <subject>Alice, Bob and Carol</subject>
    <maximum-user-count>8</maximum-user-count>
  </conference-description>
  <conference-state>
    <user-count>3</user-count>
    <active>true</active>
  </conference-state>
  <users>
    <user entity="sip:alice@example.com" state="full">
      <display-text>Alice Liddell</display-text>
      <endpoint entity="sip:alice@198.51.100.23:5060" state="full">
        <status>connected</status>
        <joining-method>dialed-out</joining-method>
        <media id="1"><type>audio</type><status>sendrecv</status></media>
        <media id="2"><type>video</type><status>sendrecv</status></media>
      </endpoint>
    </user>
    <user entity="sip:bob@example.com" state="full">
      <display-text>Bob</display-text>
      <endpoint entity="sip:bob@192.0.2.40:5060" state="full">
        <status>connected</status>
        <joining-method>dialed-out</joining-method>
        <media id="3"><type>audio</type><status>sendrecv</status></media>
        <media id="4"><type>video</type><status>sendrecv</status></media>
      </endpoint>
    </user>
    <user entity="sip:carol@example.com" state="full">
      <display-text>Carol</display-text>
      <endpoint entity="sip:carol@192.0.2.77:5060" state="full">
        <status>connected</status>
        <joining-method>dialed-out</joining-method>
        <media id="5"><type>audio</type><status>sendrecv</status></media>
      </endpoint>
    </user>
  </users>
</conference-info>
"""

# The conference focus (vidim) notifying a subscriber, through Kamailio.
NOTIFY = _message(
    """
NOTIFY sip:alice@198.51.100.23:5060;ob SIP/2.0
Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK2d1c.3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b.0
Via: SIP/2.0/UDP 203.0.113.50:5070;rport=5070;received=203.0.113.50;branch=z9hG4bK-vidim-7c2e1b0a9f
Record-Route: <sip:203.0.113.10;lr;did=1c4.9a21>
Max-Forwards: 69
From: <sip:conf-7f3a@vidim.example.com>;tag=vidim-4b1e9c
To: "Alice Liddell" <sip:alice@example.com>;tag=pjsip-Yq0kF3nT
Call-ID: vidim-sub-58d2a1f0c9b7@203.0.113.50
CSeq: 4 NOTIFY
Contact: <sip:conf-7f3a@203.0.113.50:5070;transport=udp>;isfocus
Event: conference
Subscription-State: active;expires=3412
Allow-Events: conference, presence
Content-Type: application/conference-info+xml
""",
    _CONFERENCE_INFO,
)

#: name -> (datagram, expected method or status code)
MESSAGES: dict[str, tuple[bytes, str | int]] = {
    "MESSAGE": (MESSAGE, "MESSAGE"),
    "INVITE+SDP": (INVITE, "INVITE"),
    "200 OK+SDP": (OK, 200),
    "NOTIFY+XML": (NOTIFY, "NOTIFY"),
}
MIX = "mix (1 of each)"

# --------------------------------------------------------------------------- workloads

#: What both parsers must agree on: from user/host/tag, to user/host/tag,
#: Call-ID, CSeq number and method, top Via branch/host/port.
Fields = tuple[Any, ...]


def vidim_read(data: bytes) -> Fields:
    """Parse with vidim and read From, To, Call-ID, CSeq and the top Via."""
    msg = parse_message(data)
    from_addr = msg.from_addr
    to_addr = msg.to_addr
    from_uri = from_addr.uri
    to_uri = to_addr.uri
    cseq = msg.cseq
    via = msg.top_via
    return (
        from_uri.user if isinstance(from_uri, SipURI) else None,
        from_uri.host if isinstance(from_uri, SipURI) else None,
        from_addr.tag,
        to_uri.user if isinstance(to_uri, SipURI) else None,
        to_uri.host if isinstance(to_uri, SipURI) else None,
        to_addr.tag,
        msg.call_id,
        cseq.seq,
        cseq.method,
        via.branch,
        via.host,
        via.port,
    )


def vidim_read_write(data: bytes) -> bytes:
    """vidim_read, then ``Message.to_bytes()``."""
    msg = parse_message(data)
    msg.from_addr.tag  # noqa: B018 - the same reads as vidim_read
    msg.to_addr.tag  # noqa: B018
    msg.call_id  # noqa: B018
    msg.cseq.seq  # noqa: B018
    msg.top_via.branch  # noqa: B018
    return msg.to_bytes()


def vidim_start(data: bytes) -> str | int:
    """The method of a request or the status of a response."""
    msg = parse_message(data)
    return msg.method if isinstance(msg, Request) else msg.status


def _sippy_parse(data: bytes) -> Any:
    # As sippy's SipTransactionManager.handleIncoming: decode, then pick the class.
    text = data.decode()
    if text.startswith("SIP/2.0 "):
        return _SippyResponse(text)
    return _SippyRequest(text)


def sippy_read(data: bytes) -> Fields:
    """Parse with sippy and read the same values; getHFBody() runs the lazy parsers."""
    msg = _sippy_parse(data)
    from_body = msg.getHFBody("from")
    to_body = msg.getHFBody("to")
    from_url = from_body.getUrl()
    to_url = to_body.getUrl()
    seq, method = msg.getHFBody("cseq").getCSeq()
    via = msg.getHFBody("via")
    host, port = via.getAddr()
    return (
        from_url.username,
        from_url.host,
        from_body.getTag(),
        to_url.username,
        to_url.host,
        to_body.getTag(),
        str(msg.getHFBody("call-id")),
        seq,
        method,
        via.getBranch(),
        host,
        port,
    )


def sippy_read_write(data: bytes) -> bytes:
    """sippy_read, then serialize as sippy's transaction manager does (localStr)."""
    msg = _sippy_parse(data)
    msg.getHFBody("from").getTag()
    msg.getHFBody("to").getTag()
    str(msg.getHFBody("call-id"))
    msg.getHFBody("cseq").getCSeq()
    msg.getHFBody("via").getBranch()
    return msg.localStr().encode()  # type: ignore[no-any-return]


def sippy_available() -> bool:
    return _SippyRequest is not None and _SippyResponse is not None


def sippy_version() -> str | None:
    if not sippy_available():
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sippy")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def check_messages(include_sippy: bool) -> None:
    """Fail loudly unless every message parses, round-trips and both parsers agree."""
    for name, (data, expected) in MESSAGES.items():
        got = vidim_start(data)
        if got != expected:
            raise AssertionError(f"{name}: vidim parsed {got!r}, expected {expected!r}")
        again = parse_message(vidim_read_write(data))
        if again.to_bytes() != vidim_read_write(data) or again.body != parse_message(data).body:
            raise AssertionError(f"{name}: vidim's to_bytes() does not round-trip")
        if include_sippy:
            ours, theirs = vidim_read(data), sippy_read(data)
            if ours != theirs:
                raise AssertionError(f"{name}: vidim read {ours}, sippy read {theirs}")
            # sippy's output must be a message vidim reads the same way.
            if vidim_read(sippy_read_write(data)) != ours:
                raise AssertionError(f"{name}: sippy's serialization reads differently")


# --------------------------------------------------------------------------- timing


@dataclass
class Row:
    name: str
    count: int  # messages per loop iteration
    rates: dict[str, float] = field(default_factory=dict)  # column -> messages/s

    def ratio(self, column: str) -> float | None:
        ours, theirs = self.rates.get(f"vidim {column}"), self.rates.get(f"sippy {column}")
        if ours is None or not theirs:
            return None
        return ours / theirs


def _run(func: Callable[[bytes], object], datagrams: Sequence[bytes], loops: int) -> float:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()  # as timeit does
    try:
        start = time.perf_counter()
        for _ in range(loops):
            for data in datagrams:
                func(data)
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def calibrate(func: Callable[[bytes], object], datagrams: Sequence[bytes], target: float) -> int:
    """How many loops make a run of about ``target`` seconds (as timeit's autorange)."""
    loops = 1
    while True:
        elapsed = _run(func, datagrams, loops)
        if elapsed >= target / 10:
            return max(1, round(loops * target / elapsed))
        loops *= 10 if elapsed < target / 1000 else 2


def measure(
    columns: Sequence[tuple[str, Callable[[bytes], object]]],
    datagrams: Sequence[bytes],
    *,
    target: float,
    repeat: int,
) -> dict[str, float]:
    """Messages per second per column: the best of ``repeat`` runs of about ``target`` s.

    The columns take turns, run by run, so that a burst of load on the machine
    hits vidim and sippy alike instead of one column.
    """
    loops = {name: calibrate(func, datagrams, target) for name, func in columns}
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(repeat):
        for name, func in columns:
            best[name] = min(best[name], _run(func, datagrams, loops[name]))
    return {name: loops[name] * len(datagrams) / best[name] for name in loops}


def run_benchmark(
    *,
    quick: bool = False,
    include_sippy: bool | None = None,
    repeat: int = 5,
    progress: bool = False,
) -> list[Row]:
    """Measure every message and the mix; sippy columns when it is importable."""
    if include_sippy is None:
        include_sippy = sippy_available()
    if include_sippy and not sippy_available():
        raise RuntimeError("sippy is not importable here: run bench/run-parse")
    check_messages(include_sippy)
    target, repeat = (0.005, 1) if quick else (0.3, repeat)
    columns: list[tuple[str, Callable[[bytes], object]]] = [
        ("vidim read", vidim_read),
        ("vidim read+write", vidim_read_write),
    ]
    if include_sippy:
        columns += [("sippy read", sippy_read), ("sippy read+write", sippy_read_write)]
    cases = [(name, [data]) for name, (data, _) in MESSAGES.items()]
    cases.append((MIX, [data for data, _ in MESSAGES.values()]))
    rows = []
    for name, datagrams in cases:
        if progress:
            print(f"  {name} ...", file=sys.stderr, flush=True)
        rates = measure(columns, datagrams, target=target, repeat=repeat)
        rows.append(Row(name=name, count=len(datagrams), rates=rates))
    return rows


# --------------------------------------------------------------------------- report


def _size(name: str) -> str:
    if name == MIX:
        return str(sum(len(data) for data, _ in MESSAGES.values()) // len(MESSAGES)) + " avg"
    return str(len(MESSAGES[name][0]))


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table: messages per second, and vidim/sippy where sippy ran."""
    with_sippy = any("sippy read" in row.rates for row in rows)
    header = ["message", "bytes", "vidim read", "vidim read+write"]
    if with_sippy:
        header += ["sippy read", "sippy read+write", "ratio read", "ratio read+write"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in rows:
        name = f"**{row.name}**" if row.name == MIX else row.name
        cells = [name, _size(row.name)]
        cells += [f"{row.rates[c]:,.0f}" for c in ("vidim read", "vidim read+write")]
        if with_sippy:
            cells += [f"{row.rates[c]:,.0f}" for c in ("sippy read", "sippy read+write")]
            for column in ("read", "read+write"):
                ratio = row.ratio(column)
                cells.append("n/a" if ratio is None else f"{ratio:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "vidim"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (vidim/ modified)" if dirty else "")


def _build() -> str:
    return "pure Python"


def environment(command: str) -> list[tuple[str, str]]:
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{_nproc()} CPUs (nproc), {_cpu_model()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("vidim", f"{_git_revision()}, {_build()}"),
        ("sippy", sippy_version() or "not installed"),
        ("command", f"`{command}`"),
    ]


def format_results(rows: Sequence[Row], command: str) -> str:
    mix = next(row for row in rows if row.name == MIX)
    out = [f"- {key}: {value}" for key, value in environment(command)]
    out += ["", format_table(rows), ""]
    ratio = mix.ratio("read")
    if ratio is not None:
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        out.append(
            f"On the mix vidim reads {ratio:.2f}x as many messages per second as sippy "
            f"(read+write: {mix.ratio('read+write'):.2f}x); it {verdict} the "
            f"{TARGET_RATIO:g}x target."
        )
    return "\n".join(out)


def write_results(path: Path, results: str) -> None:
    """Replace the text between the result markers of ``path`` with ``results``."""
    new_doc = f"# Performance\n\n{RESULTS_BEGIN}\n{RESULTS_END}\n"
    replace_section(path, RESULTS_BEGIN, RESULTS_END, results, new_doc=new_doc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny runs, no repeats")
    parser.add_argument("--no-sippy", action="store_true", help="measure vidim only")
    parser.add_argument(
        "--repeat", type=int, default=5, metavar="N", help="runs per cell, best kept (5)"
    )
    parser.add_argument(
        "--write", metavar="FILE", type=Path, help="rewrite the results section of FILE"
    )
    args = parser.parse_args(argv)
    include_sippy = not args.no_sippy and sippy_available()
    if not include_sippy and not args.no_sippy:
        print(
            "sippy is not importable: vidim columns only (bench/run-parse installs it in "
            "bench/.venv)",
            file=sys.stderr,
        )
    if args.write and (args.quick or not include_sippy):
        parser.error("--write needs a full run with sippy (no --quick, no --no-sippy)")
    rows = run_benchmark(
        quick=args.quick, include_sippy=include_sippy, repeat=args.repeat, progress=not args.quick
    )
    command = os.environ.get("BENCH_COMMAND") or " ".join(
        ["python", "bench/parse.py", *(argv if argv is not None else sys.argv[1:])]
    )
    results = format_results(rows, command)
    print(results)
    if args.write:
        write_results(args.write, results)
        print(f"wrote the results into {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

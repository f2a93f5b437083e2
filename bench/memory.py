"""Resident memory per live conference: the real Allocator, 100,000 conferences, no sockets.

The allocator is driven in-process and sans-IO, on a virtual clock, with every
peer faked by this script:

* a requester's header-form MESSAGE (``X-Vidim-Mode: video`` and two invitees
  in ``X-Vidim-Invite``) to the service URI ``sip:vidim@example.com`` arrives
  through the IM proxy, as bytes (the allocator parses it); probing is off
  (``--no-probe`` in the daemon).  (Before 2026-11-26 the allocator's domain
  was left at ``localhost``, so the Request-URI counted as a third invitee:
  conferences of four, not three.)
* an RFC 4579 focus answers the INVITE with 200 (SDP answer, Contact
  ``;isfocus``), takes the ACK, answers the conference-event SUBSCRIBE with 200
  and sends the first NOTIFY (full state, nobody connected yet); ``--profile
  asterisk`` has no subscription;
* the invitees and the requester answer every MESSAGE (invitations, the
  "ready" notice) with 200, the focus answers in-dialog OPTIONS keepalives.

Every answer is built with vidim's own helpers (``make_response``, the focus
side's ``Dialog``), serialized and fed back with ``receive_datagram``: what
the allocator holds is what it would hold behind a socket.  The driver keeps
nothing per conference.  Conferences are created in batches; then the clock
moves past Timer J/K/M until no transaction is left (keepalives are answered
on the way), so that only the live conferences remain.

Each measurement runs in a child process of its own: VmRSS (``/proc/self/status``,
after ``gc.collect()``) before the first and after the last conference, divided
by the number of conferences.  A second child runs 10,000 conferences under
``tracemalloc`` and says where the bytes go: top allocation sites, live objects
by type, and the allocator's indexes by deep size.

    python bench/memory.py                                   # 100,000 conferences
    python bench/memory.py --write docs/performance.md       # and rewrite its Memory section
    python bench/memory.py --quick                           # smoke: 1,000 conferences
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):  # run as a script from anywhere
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from doc_section import replace_section  # noqa: E402 - bench/doc_section.py
from vidim.allocator.allocator import Allocator, AllocatorConfig  # noqa: E402
from vidim.allocator.conference import ConferenceState  # noqa: E402
from vidim.allocator.profiles import FocusProfile  # noqa: E402
from vidim.allocator.requests import RequestPolicy  # noqa: E402
from vidim.conference_info import (  # noqa: E402
    CONFERENCE_INFO_TYPE,
    ConferenceInfo,
    build_conference_info,
)
from vidim.sip import (  # noqa: E402
    Address,
    DialogManager,
    Message,
    Request,
    Via,
    make_response,
    new_branch,
    new_tag,
)

RESULTS_BEGIN = "<!-- bench/memory.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/memory.py results: end -->"
TARGET_BYTES = 8192

ALLOCATOR = Address("127.0.0.1", 5070)
PROXY = Address("127.0.0.1", 5060)
FOCUS = Address("127.0.0.1", 5080)
FOCUS_URI = f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}"
#: Conferences asked for in one go; batches are spread to make ``--rate``.
BATCH = 100
#: New conferences per virtual second: completed transactions linger 32 s
#: (Timer J, M), so the rate sets how many are alive at once during the run.
RATE = 200.0
#: Keepalives and the idle rule would fire during a run of 100,000 at this
#: rate (500 virtual seconds); both are pushed past its end, so that the
#: measurement finds every conference ACTIVE and no transaction in flight.
QUIET = 3600.0

_SDP_ANSWER = (
    b"v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 9 RTP/AVP 0\r\na=inactive\r\n"
)


def rss_bytes() -> int:
    """VmRSS of this process, in bytes, after a full collection."""
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# --------------------------------------------------------------------------- the driver


class Driver:
    """The allocator and every peer around it; nothing kept per conference."""

    def __init__(self, profile: FocusProfile, rate: float = RATE) -> None:
        self.profile = profile
        self.rate = rate
        self.allocator = Allocator(
            AllocatorConfig(
                local=ALLOCATOR,
                focus_uris=(FOCUS_URI,),
                profile=profile,
                # The service is sip:vidim@example.com, the Request-URI of the
                # MESSAGEs below: not an invitee.
                requests=RequestPolicy(domain="example.com"),
                proxy=PROXY,
                probe=False,
                keepalive_interval=QUIET,
                idle_timeout=QUIET,
                max_conferences=10_000_000,  # the default (100,000) would refuse the last ones
            )
        )
        self.now = 0.0
        self.created = 0
        self.answered = 0
        focus_via = Via("UDP", FOCUS.host, FOCUS.port)
        self._focus = DialogManager(local_via=focus_via, warn_agent="focus")
        self._rooms = 0

    # -- what the peers do ------------------------------------------------------
    def new_conference(self, number: int) -> None:
        user = f"u{number}"
        wire = (
            f"MESSAGE sip:vidim@example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {PROXY.host}:{PROXY.port};branch={new_branch()}\r\n"
            f"Via: SIP/2.0/UDP 198.51.100.7:5060;received=198.51.100.7;rport=5060"
            f";branch={new_branch()}\r\n"
            "Max-Forwards: 69\r\n"
            f"From: <sip:{user}@example.com>;tag={new_tag()}\r\n"
            "To: <sip:vidim@example.com>\r\n"
            f"Call-ID: {new_tag()}@198.51.100.7\r\n"
            "CSeq: 1 MESSAGE\r\n"
            "X-Vidim-Mode: video\r\n"
            f"X-Vidim-Invite: <sip:b{number}@example.com>, <sip:c{number}@example.com>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        self.allocator.receive_datagram(wire, PROXY, self.now)

    def _answer(self, request: Request, destination: Address) -> None:
        allocator = self.allocator
        method = request.method
        if method == "ACK":
            return
        source = destination
        if method == "INVITE" and request.to_addr.tag is None:
            self._rooms += 1
            room = f"sip:conf-{self._rooms}@{FOCUS.host}:{FOCUS.port}"
            dialog = self._focus.accept(request, local_contact=f"<{room}>;isfocus")
            response = dialog.create_response(
                request, 200, body=_SDP_ANSWER, content_type="application/sdp"
            )
            self._focus.remove(dialog)
            allocator.receive_datagram(response.to_bytes(), source, self.now)
            return
        if method == "SUBSCRIBE" and request.to_addr.tag is None:
            dialog = self._focus.accept(request, local_contact=f"<{request.uri}>")
            response = dialog.create_response(request, 200, headers=[("Expires", "3600")])
            info = ConferenceInfo(entity=str(request.uri), version=1, state="full")
            notify = dialog.create_request(
                "NOTIFY",
                headers=[("Event", "conference"), ("Subscription-State", "active;expires=3600")],
                body=build_conference_info(info),
                content_type=CONFERENCE_INFO_TYPE,
            )
            self._focus.remove(dialog)
            allocator.receive_datagram(response.to_bytes(), source, self.now)
            allocator.receive_datagram(notify.to_bytes(), source, self.now)
            return
        # MESSAGEs (invitations, notices), keepalive OPTIONS, BYE: 200.
        tag = None if request.to_addr.tag is not None else new_tag()
        ok = make_response(request, 200, to_tag=tag)
        allocator.receive_datagram(ok.to_bytes(), source, self.now)

    def pump(self) -> None:
        """Answer what the allocator sends until it sends nothing more."""
        allocator = self.allocator
        while True:
            out: list[tuple[Message, Address]] = allocator.messages_to_send()
            allocator.events()
            if not out:
                return
            for message, destination in out:
                if isinstance(message, Request):
                    self._answer(message, destination)
            # what the allocator sent to the requester (200s to NOTIFY, 202s) needs nothing

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.allocator.handle_timer(self.now)
        self.pump()

    # -- the run ----------------------------------------------------------------
    def create(self, count: int) -> None:
        for start in range(0, count, BATCH):
            for number in range(self.created, self.created + min(BATCH, count - start)):
                self.new_conference(number)
            self.created += min(BATCH, count - start)
            self.pump()
            self.advance(BATCH / self.rate)

    def settle(self) -> None:
        """Move the clock until no transaction is left (Timer J, K, M; keepalives answered)."""
        allocator = self.allocator
        for _ in range(600):
            if len(allocator._layer) == 0 and not allocator._context.pending:
                return
            deadline = allocator.get_timer()
            step = 1.0 if deadline is None else max(deadline - self.now, 0.001)
            self.advance(min(step, 1.0))
        raise RuntimeError(f"transactions still pending: {len(allocator._layer)}")

    def check(self, expected: int) -> None:
        conferences = self.allocator.conferences
        active = sum(1 for c in conferences.values() if c.state is ConferenceState.ACTIVE)
        if len(conferences) != expected or active != expected:
            raise RuntimeError(f"{active} active of {len(conferences)} live, {expected} expected")
        sizes = {len(c.participants) for c in conferences.values()}
        if sizes != {3}:  # the requester and two invitees
            raise RuntimeError(f"conferences of {sizes} participants, 3 expected")
        if self.allocator._context.dialogs._pending:
            raise RuntimeError("the dialog manager still tracks requests")


# --------------------------------------------------------------------------- measurements


def _peak_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure_rss(count: int, profile: FocusProfile, rate: float = RATE) -> dict[str, Any]:
    """In this process: RSS before and after ``count`` live conferences."""
    driver = Driver(profile, rate)
    driver.create(10)  # warm every code path and cache before the baseline
    driver.settle()
    # the ten warm-up conferences stay: they are in the baseline
    before = rss_bytes()
    started = time.perf_counter()
    driver.create(count)
    driver.settle()
    elapsed = time.perf_counter() - started
    driver.check(count + 10)
    after = rss_bytes()
    return {
        "conferences": count,
        "profile": profile.value,
        "rss_before": before,
        "rss_after": after,
        "per_conference": (after - before) / count,
        "rss_peak": _peak_rss(),
        "rate": rate,
        "seconds": elapsed,
        "virtual_seconds": driver.now,
    }


def _deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of ``obj`` and of everything it reaches that ``seen`` does not hold yet."""
    size = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, type | ModuleType | FunctionType | BuiltinFunctionType | Enum):
            continue
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset) or type(item).__name__ == "deque":
            stack.extend(item)  # type: ignore[arg-type]
        else:
            slots = [
                name
                for klass in type(item).__mro__
                for name in getattr(klass, "__slots__", ())
                if isinstance(name, str)
            ]
            for name in slots:
                value = getattr(item, name, None)
                if value is not None:
                    stack.append(value)
            if hasattr(item, "__dict__"):
                stack.append(item.__dict__)
    return size


def measure_where(count: int, profile: FocusProfile, top: int = 12) -> dict[str, Any]:
    """In this process: tracemalloc sites, object types and allocator indexes for ``count``."""
    driver = Driver(profile)
    driver.create(10)
    driver.settle()
    gc.collect()
    types_before = Counter(type(o).__name__ for o in gc.get_objects())
    tracemalloc.start(1)
    baseline = tracemalloc.take_snapshot()
    driver.create(count)
    driver.settle()
    driver.check(count + 10)
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = snapshot.filter_traces(filters).compare_to(baseline.filter_traces(filters), "lineno")
    traced = sum(stat.size_diff for stat in diff)
    sites = []
    for stat in sorted(diff, key=lambda s: s.size_diff, reverse=True)[:top]:
        frame = stat.traceback[0]
        name = (
            os.path.relpath(frame.filename, ROOT)
            if frame.filename.startswith(str(ROOT))
            else (Path(frame.filename).name)
        )
        sites.append({"where": f"{name}:{frame.lineno}", "bytes": stat.size_diff,
                      "blocks": stat.count_diff})  # fmt: skip
    types_after = Counter(type(o).__name__ for o in gc.get_objects())
    grown = {name: n - types_before.get(name, 0) for name, n in types_after.items()}
    types = [
        {"type": name, "objects": objects}
        for name, objects in sorted(grown.items(), key=lambda item: item[1], reverse=True)
        if objects >= count // 2
    ]
    # Deep size of the state each part of the allocator keeps; shared objects
    # (the config, the Via, the Contact) are counted once, under the first
    # attribute reaching them.
    allocator = driver.allocator
    seen: set[int] = set()
    _deep_size(allocator.config, seen)
    owners = {"context": allocator._context, "focus": allocator._focus,
              "roster": allocator._roster, "commands": allocator._commands}  # fmt: skip
    seen.update(id(owner) for owner in owners.values())
    indexes: list[dict[str, Any]] = []
    for owner_name, owner in owners.items():
        for name, value in vars(owner).items():
            if name == "config" or value is None or callable(value):
                continue
            size = _deep_size(value, seen)
            if size >= count:
                indexes.append({"index": f"{owner_name}.{name}", "bytes": size})
    indexes.sort(key=lambda i: i["bytes"], reverse=True)
    return {
        "conferences": count,
        "profile": profile.value,
        "traced": traced,
        "sites": sites,
        "types": types[:top],
        "indexes": indexes,
    }


def _child(argv: Sequence[str]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(argv)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(
    conferences: int, where: int, profiles: Sequence[FocusProfile], rate: float = RATE
) -> dict[str, Any]:
    results: dict[str, Any] = {"rss": [], "where": None}
    for profile in profiles:
        results["rss"].append(
            _child(
                [
                    *("--child", "rss", "--conferences", str(conferences)),
                    *("--profile", profile.value, "--rate", str(rate)),
                ]
            )
        )
    if where:
        results["where"] = _child(
            ["--child", "where", "--conferences", str(where), "--profile", profiles[0].value]
        )
    return results


# --------------------------------------------------------------------------- report


def _kib(n: float) -> str:
    return f"{n / 1024:,.2f} KiB"


def _build() -> str:
    return "pure Python"


def format_report(results: dict[str, Any], command: str) -> str:
    lines = [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- vidim: {_revision()}, {_build()}",
        f"- command: `{command}`",
        "",
        "| profile | conferences | RSS before | RSS after | per conference | target | driven in |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rss"]:
        per = row["per_conference"]
        verdict = "met" if per < TARGET_BYTES else "missed"
        lines.append(
            f"| {row['profile']} | {row['conferences']:,} | {row['rss_before'] / 2**20:,.1f} MiB "
            f"| {row['rss_after'] / 2**20:,.1f} MiB | **{_kib(per)}** | < 8 KiB ({verdict}) "
            f"| {row['seconds']:.1f} s |"
        )
    where = results.get("where")
    if where:
        n = where["conferences"]
        lines += [
            "",
            f"Where the bytes go ({where['profile']}, {n:,} conferences under tracemalloc: "
            f"{_kib(where['traced'] / n)} traced per conference).",
            "",
            "| allocator part.attribute (deep size) | bytes per conference |",
            "|---|---:|",
        ]
        lines += [f"| `{i['index']}` | {i['bytes'] / n:,.0f} |" for i in where["indexes"]]
        lines += [
            "",
            "| allocation site (tracemalloc) | bytes per conference | blocks per conference |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| `{s['where']}` | {s['bytes'] / n:,.0f} | {s['blocks'] / n:.1f} |"
            for s in where["sites"]
        ]
        lines += ["", "| type (gc-tracked objects) | per conference |", "|---|---:|"]
        lines += [f"| `{t['type']}` | {t['objects'] / n:.1f} |" for t in where["types"]]
    return "\n".join(lines)


def _revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "vidim"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (vidim/ modified)" if dirty else head


def write_results(path: Path, text: str) -> None:
    """Replace what lies between this script's markers in ``path`` (and nothing else)."""
    replace_section(path, RESULTS_BEGIN, RESULTS_END, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conferences", type=int, default=100_000)
    parser.add_argument("--where", type=int, default=10_000,
                        help="conferences under tracemalloc (0: skip)")  # fmt: skip
    parser.add_argument("--profile", choices=[p.value for p in FocusProfile], action="append",
                        help="focus profile (repeat for several; default rfc4579)")  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=RATE, help="new conferences per virtual second"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 conferences")
    parser.add_argument("--write", type=Path, help="rewrite the Memory results in this file")
    parser.add_argument("--child", choices=("rss", "where"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    profiles = [FocusProfile(p) for p in (args.profile or ["rfc4579"])]
    if args.child is not None:
        if args.child == "rss":
            print(json.dumps(measure_rss(args.conferences, profiles[0], args.rate)))
        else:
            print(json.dumps(measure_where(args.conferences, profiles[0])))
        return 0
    conferences, where = (1000, 1000) if args.quick else (args.conferences, args.where)
    results = run(conferences, where, profiles, args.rate)
    command = "python bench/memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = format_report(results, command.strip())
    print(report)
    if args.write is not None:
        write_results(args.write, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

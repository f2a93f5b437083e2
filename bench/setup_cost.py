"""Instructions per conference setup in vidim-daemon, by layer, counted by callgrind.

bench/setups.py profiles the daemon with py-spy, which cannot see inside the
modules mypyc compiled: most of its samples read "other".  callgrind counts
every instruction the daemon's process runs in user space, interpreted or
compiled, and gives it to a C function; mypyc's are named after the Python ones
(``CPyDef_parser___parse_message`` is ``vidim.sip.parser.parse_message``).
Kernel time is not counted (``perf`` put it at about 12% of the daemon's CPU).

The set-up is bench/setups.py's (SIPp requester, focus and invitees, profile
``asterisk``, no probe) at a low rate, since valgrind runs the daemon some 50
times slower.  The daemon starts under ``valgrind --tool=callgrind
--instr-atstart=no``, takes warm-up setups uncounted, and counts while SIPp
sends COUNT setups (``callgrind_control -i on`` / ``off``).  This runs twice, at
INFO (as deployed: four lines per setup) and at WARNING (none), so the
difference is what the log lines cost.

    .venv/bin/python bench/setup_cost.py                              # 400 setups at 20/s, twice
    .venv/bin/python bench/setup_cost.py --write docs/performance.md  # and record it
    .venv/bin/python bench/setup_cost.py --quick                      # smoke: 20 setups, INFO only
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
import setups  # noqa: E402 - bench/setups.py, beside this script
from doc_section import replace_section  # noqa: E402 - bench/doc_section.py

RESULTS_BEGIN = "<!-- bench/setup_cost.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/setup_cost.py results: end -->"
#: valgrind starts the interpreter and imports vidim some 50 times slower.
START_TIMEOUT = 300.0
WARM_UP = 50

#: (what, mypyc's C function, depth): each row's instructions include its
#: callees'.  Rows at depth 0 do not call each other; what they leave out is
#: the event loop, the daemon's timers and the writing of the log.
LAYERS: tuple[tuple[str, str, int], ...] = (
    ("a datagram in: uvloop's callback to the core's answer",
     "CPyDef_aio___SipServer____datagram_received", 0),
    ("parsing it", "CPyDef_parser___parse_message", 1),
    ("checking its core headers (top Via, From, To, CSeq...)", "CPyDef_parser____validate", 2),
    ("the allocator, its dialogs and transactions", "CPyDef_allocator___Allocator___receive", 1),
    ("serializing and sending what goes out", "CPyDef_aio___SipServer____flush_messages", 1),
    ("work deferred to after the sends, or to a timer", "CPyDef_aio___SipServer___transmit", 0),
    ("the request line (vidim.aio, INFO)", "CPyDef_aio___SipServer____log_received", 1),
    ("events to the daemon (its event lines)", "CPyDef_aio___SipServer____dispatch", 1),
)  # fmt: skip

#: Shared objects by what they are (the first pattern found in the path wins).
OBJECTS: tuple[tuple[str, str], ...] = (
    ("libpython", "CPython (interpreter, objects, strings, dicts)"),
    ("native__mypyc", "vidim's compiled modules"),
    ("uvloop", "uvloop"),
    ("libc.so", "libc"),
)


# ------------------------------------------------------------ callgrind's file


@dataclass
class CallgrindProfile:
    """What a callgrind output file says: the total, and each function's self and call costs."""

    total: int = 0
    #: function name -> instructions in the function itself (all objects).
    own: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: function name -> instructions in the calls it made (callees included).
    called: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: object file -> instructions of its functions' own code.
    by_object: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def inclusive(self, function: str) -> int:
        """The function's own instructions plus its callees' (0: never ran)."""
        return self.own.get(function, 0) + self.called.get(function, 0)


_NAMED = re.compile(r"\((\d+)\)(?: (.*))?")
#: Which names share one table of compressed ids: objects, files, functions.
_SPACES = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
           "cfl": "fl", "fn": "fn", "cfn": "fn"}  # fmt: skip


def read_callgrind(lines: Iterable[str]) -> CallgrindProfile:
    """Parse callgrind's output format (valgrind's callgrind-format docs), event Ir only.

    Names may be compressed (``(7) name`` once, ``(7)`` after); a cost line
    right after ``calls=`` is the cost of that call, callees included; any
    other cost line belongs to the current function itself.
    """
    profile = CallgrindProfile()
    names: dict[tuple[str, str], str] = {}

    def name(kind: str, value: str) -> str:
        match = _NAMED.fullmatch(value.strip())
        if match is None:
            return value.strip()
        key = (_SPACES[kind], match.group(1))
        if match.group(2) is not None:
            names[key] = match.group(2)
        return names.get(key, value.strip())

    obj = function = ""
    after_calls = False
    for raw in lines:
        line = raw.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            if after_calls:
                profile.called[function] += cost
                after_calls = False
            else:
                profile.own[function] += cost
                profile.by_object[obj] += cost
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            obj = name(key, value)
        elif key == "fn":
            function = name(key, value)
        elif key in _SPACES:
            name(key, value)  # may define a compressed name used later
        elif key == "calls":
            after_calls = True
        elif line.startswith(("summary:", "totals:")):
            profile.total = max(profile.total, int(line.split()[1]))
    return profile


# ------------------------------------------------------------------- the runs


@dataclass
class CostRun:
    log_level: str
    count: int
    rate: int
    done: int = 0
    retrans: int = 0
    profile: CallgrindProfile | None = None
    build: str = ""

    def per_setup(self, instructions: int) -> float:
        return instructions / self.done if self.done else float("nan")


def run_counted(workdir: Path, *, count: int, rate: int, log_level: str) -> CostRun:
    """One daemon under callgrind; COUNT setups at RATE/s counted after the warm-up."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = CostRun(log_level=log_level, count=count, rate=rate)
    out = workdir / "callgrind.out"
    valgrind = setups.require("valgrind")
    control = setups.require("callgrind_control")
    wrapper = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    sipps: list[setups.Sipp] = []
    daemon: setups.Daemon | None = None
    try:
        invitees = setups.start_sipp("invitees", "invitee.xml", workdir)
        sipps.append(invitees)
        focus = setups.start_sipp("focus", "focus.xml", workdir)
        sipps.append(focus)
        daemon = setups.start_daemon(
            workdir, focus=focus.port, proxy=invitees.port, log_level=log_level,
            wrapper=wrapper, start_timeout=START_TIMEOUT,
            # Under valgrind a request can wait long enough in the queue to trip the
            # guard, whose 503s would leave setups out: what is counted is the work.
            limits=["overload = false"],
        )  # fmt: skip
        setups.warm_up(daemon.port, WARM_UP)
        pid = str(daemon.proc.pid)
        subprocess.run([control, "-i", "on", pid], check=True, capture_output=True)
        requester = setups.start_requester(
            workdir, daemon.port, rate, count, timeout=count / rate + 120
        )
        sipps.append(requester)
        requester.wait(timeout=count / rate + 180)
        wait_idle(daemon.proc.pid)  # the last invitations and ACKs, 50 times slower
        subprocess.run([control, "-i", "off", pid], check=True, capture_output=True)
    finally:
        for sipp in sipps:
            setups.stop_sipp(sipp)
        if daemon is not None:
            setups.stop(daemon.proc, timeout=120.0)  # callgrind writes its file on exit
    logs = requester.log_lines(), focus.log_lines(), invitees.log_lines()
    *_, completed = setups.join_setups(*logs)
    run.done = len(completed)
    if run.done < count:
        print(f"{log_level}: {count - run.done} of {count} setups not seen through "
              f"(log lines: requester {len(logs[0])}, focus {len(logs[1])}, invitees "
              f"{len(logs[2])}; in {workdir})", file=sys.stderr)  # fmt: skip
    run.retrans = sum(s.count("Retransmissions(C)") for s in sipps)
    run.build = setups.daemon_builds(workdir)
    with open(out, errors="replace") as lines:
        run.profile = read_callgrind(lines)
    return run


def wait_idle(pid: int, *, window: float = 3.0, busy: float = 0.05, limit: float = 90.0) -> None:
    """Until the process used under ``busy`` of a CPU over ``window`` seconds (at most ``limit``).

    SIPp writes its logs when it exits, so they cannot say when the daemon is
    done; its CPU can: under valgrind the last setups take seconds to finish.
    The window outlasts the first two retransmissions of a lost datagram
    (0.5 s and 1 s later, RFC 3261 Timer A/E), which leave the daemon idle
    in between.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = setups.cpu_seconds(pid)
        time.sleep(window)
        if setups.cpu_seconds(pid) - before < busy * window:
            return


# ----------------------------------------------------------------- the report


def _k(value: float) -> str:
    return "-" if value != value else f"{value / 1000:,.0f} k"  # NaN: nothing measured


def _share(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole else "-"


def format_report(runs: Sequence[CostRun], command: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    valgrind = subprocess.run(
        [setups.require("valgrind"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = [
        f"- date: {now}",
        f"- machine: {setups.machine()}",
        f"- tools: {valgrind}, {setups.tool_versions()}",
        f"- vidim build: {', '.join(sorted({r.build for r in runs if r.build})) or '?'}",
        f"- vidim: {setups.git_describe()}",
        f"- command: `{command}`",
        "",
    ]
    head = "| per setup (user space, callees included) |" + "".join(
        f" {r.log_level.upper()} |" for r in runs
    )
    rule = "|---|" + "---:|" * len(runs)
    out += [
        "Setups counted: "
        + "; ".join(
            f"{r.log_level.upper()} {r.done} of {r.count} at {r.rate}/s done, "
            f"{r.retrans} retransmissions"
            for r in runs
        ),
        "",
        head,
        rule,
    ]
    totals = [r.profile.total if r.profile else 0 for r in runs]
    out.append(
        "| **the whole daemon** |"
        + "".join(f" **{_k(r.per_setup(t))}** |" for r, t in zip(runs, totals, strict=True))
    )
    for what, function, depth in LAYERS:
        cells = ""
        for r, total in zip(runs, totals, strict=True):
            value = r.profile.inclusive(function) if r.profile else 0
            cells += f" {_k(r.per_setup(value))} ({_share(value, total)}) |"
        out.append(f"| {'&nbsp;' * 4 * depth}{what} |{cells}")
    cells = ""
    for r, total in zip(runs, totals, strict=True):
        top = sum(r.profile.inclusive(f) for _, f, d in LAYERS if d == 0) if r.profile else 0
        cells += f" {_k(r.per_setup(total - top))} ({_share(total - top, total)}) |"
    out.append(f"| the rest: the event loop, timers, writing the log |{cells}")
    if len(runs) == 2 and all(r.done for r in runs):
        info, warning = runs
        diff = info.per_setup(totals[0]) - warning.per_setup(totals[1])
        out += [
            "",
            f"The log lines of a setup at INFO: {_k(diff)} instructions "
            f"({_share(diff, info.per_setup(totals[0]))} of the daemon's at INFO).",
        ]
    out += [
        "",
        "Own instructions by object file (where the work is done, not who asked for it):",
        "",
    ]
    out += ["| object |" + "".join(f" {r.log_level.upper()} |" for r in runs), rule]
    for pattern, label in (*OBJECTS, ("", "everything else")):
        cells = ""
        for r, total in zip(runs, totals, strict=True):
            value = _object_share(r.profile, pattern) if r.profile else 0
            cells += f" {_share(value, total)} |"
        out.append(f"| {label} |{cells}")
    return "\n".join(out) + "\n"


def _object_share(profile: CallgrindProfile, pattern: str) -> int:
    """Own instructions of the objects ``pattern`` names; "": those no OBJECTS pattern names."""
    if pattern:
        return sum(n for obj, n in profile.by_object.items() if pattern in obj)
    known = [p for p, _ in OBJECTS]
    return sum(n for obj, n in profile.by_object.items() if not any(p in obj for p in known))


def write_results(doc: Path, text: str) -> None:
    replace_section(doc, RESULTS_BEGIN, RESULTS_END, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400, help="setups counted per run")
    parser.add_argument("--rate", type=int, default=20, help="setups per second")
    parser.add_argument("--quick", action="store_true", help="20 setups at 10/s, INFO only")
    parser.add_argument("--write", type=Path, help="rewrite the results section of this file")
    parser.add_argument("--workdir", type=Path, help="keep every log and callgrind file here")
    args = parser.parse_args(argv)
    levels = ["info"] if args.quick else ["info", "warning"]
    count, rate = (20, 10) if args.quick else (args.count, args.rate)
    command = "python bench/setup_cost.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="vidim-setup-cost-") as tmp:
        base = args.workdir or Path(tmp)
        runs = [
            run_counted(base / level, count=count, rate=rate, log_level=level) for level in levels
        ]
    text = format_report(runs, command.strip())
    print(text)
    if args.write:
        write_results(args.write, text)
    return 0 if all(r.done == r.count for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

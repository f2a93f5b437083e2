"""bench/setup_cost.py: its callgrind reader on a file written by hand, and a quick run.

The quick run starts the real daemon under valgrind beside real SIPp peers; it
asserts that the setups complete and that the layers add up, never a count.
"""

from __future__ import annotations

import shutil
from types import ModuleType

import pytest
from bench_scripts import load_script

# Callgrind's format (valgrind's docs, "Callgrind Format Specification"): compressed
# names, a call's inclusive cost on the line after calls=, relative positions.
SAMPLE = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 950

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50

ob=(2) /work/vidim/native__mypyc.cpython-311-x86_64-linux-gnu.so
fl=(2) __native_native.c
fn=(2) CPyDef_parser___parse_message
5 200
cob=(1)
cfi=(1)
cfn=(1)
calls=3 10
* 150
fi=(3) unicodeobject.h
+1 30

fn=(3) CPyDef_aio___SipServer____datagram_received
7 20
cfn=(2)
calls=1 5
* 380
cob=(3) /usr/lib/libc.so.6
cfn=(4) memcpy
calls=2 0
* 70
ob=(3)
fl=(4)
fn=(4)
0 70
ob=(1)
fn=(1)
+5 480
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("setup_cost")


def test_the_reader_gives_own_and_inclusive_costs(bench: ModuleType) -> None:
    profile = bench.read_callgrind(SAMPLE.splitlines())
    assert profile.total == 950
    assert sum(profile.own.values()) == 950  # every cost line is someone's own
    assert profile.own["_PyEval_EvalFrameDefault"] == 630
    # own 200 + 30 (an inlined header: fi= does not change the function), calls 150
    assert profile.inclusive("CPyDef_parser___parse_message") == 380
    assert profile.inclusive("CPyDef_aio___SipServer____datagram_received") == 20 + 380 + 70
    assert profile.inclusive("memcpy") == 70  # named first as a callee (cfn=)
    assert profile.inclusive("never ran") == 0
    assert profile.by_object == {
        "/usr/lib/libpython3.11.so.1.0": 630,
        "/work/vidim/native__mypyc.cpython-311-x86_64-linux-gnu.so": 250,
        "/usr/lib/libc.so.6": 70,  # named first as a callee's object (cob=)
    }


def test_the_report_splits_a_setup_by_layer(bench: ModuleType) -> None:
    run = bench.CostRun(log_level="info", count=1, rate=10, done=1)
    run.profile = bench.read_callgrind(SAMPLE.splitlines())
    report = bench.format_report([run], "python bench/setup_cost.py --quick")
    assert "| **the whole daemon** | **1 k** |" in report
    assert "parsing it | 0 k (40%) |" in report  # 380 of 950
    assert "the rest: the event loop, timers, writing the log | 0 k (51%) |" in report  # 480
    assert "| CPython (interpreter, objects, strings, dicts) | 66% |" in report
    assert "| libc | 7% |" in report


@pytest.mark.integration
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("valgrind", "callgrind_control", "sipp")),
    reason="valgrind and sipp are installed by scripts/setup",
)
def test_quick_run_counts_every_setup(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--quick"]) == 0  # 0: every setup was seen through
    out = capsys.readouterr().out
    assert "Setups counted: INFO 20 of 20 at 10/s done, 0 retransmissions" in out
    whole = _thousands(out, "| **the whole daemon** | **")
    assert whole > 100  # thousands of instructions per setup: the daemon was counted
    if "compiled with mypyc" in out:  # else there are no C functions to find
        parsing = _thousands(out, "parsing it | ")
        assert 0 < parsing < whole


def _thousands(report: str, prefix: str) -> int:
    """The figure ("1,208 k") right after ``prefix`` in the report."""
    start = report.index(prefix) + len(prefix)
    return int(report[start:].split(" k", 1)[0].replace(",", ""))

"""The layering rules of docs/architecture.md, checked on the imports themselves.

Each rule names a group of modules and what they may not import.  The check
reads every ``import`` and ``from ... import`` in vidim/ with ``ast`` (relative
imports resolved), so a wrong-way import fails here before anyone reads it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VIDIM = ROOT / "vidim"

#: Modules that do I/O or run an event loop: only vidim.aio and vidim.store (the
#: files and connections that keep state) may; the demo's command line runs on a
#: virtual clock and imports none of them.
IO_MODULES = ("asyncio", "socket", "selectors", "ssl", "threading", "uvloop", "time")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path) -> set[str]:
    """Every module ``path`` (a file under ``root``) imports, as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # ``from . import x`` may import the submodule x.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _modules(*globs: str) -> list[Path]:
    return sorted({path for pattern in globs for path in VIDIM.glob(pattern)})


def _offending(paths: list[Path], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    bad = []
    for path in paths:
        for name in sorted(_imports(path, root)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(root)} imports {name}")
    return bad


RULES = [
    # (what, which files, what they may not import)
    ("the vocabulary is the bottom", ["vocabulary.py"], ("vidim",)),
    ("RTP/RTCP packets are the bottom", ["rtp.py"], ("vidim",)),
    ("the timers are the bottom", ["timers.py"], ("vidim",)),
    (
        "the SIP core knows nothing above it",
        ["sip/*.py"],
        ("vidim.allocator", "vidim.focus", "vidim.aio", "vidim.sdp", "vidim.core", "vidim.store"),
    ),
    (
        "bodies and SDP sit below both servers",
        ["sdp.py", "sdes.py", "resource_lists.py", "conference_info.py", "xmlbody.py", "core.py"],
        ("vidim.allocator", "vidim.focus", "vidim.aio", "vidim.store"),
    ),
    (
        "the allocator never imports the focus",
        ["allocator/*.py"],
        ("vidim.focus", "vidim.aio", "vidim.store"),
    ),
    (
        "the focus never imports the allocator",
        ["focus/*.py"],
        ("vidim.allocator", "vidim.aio", "vidim.store"),
    ),
    (
        "the AMI protocol is sans-IO and knows the allocator, not the servers' I/O",
        ["ami/*.py"],
        ("vidim.focus", "vidim.aio", "vidim.store"),
    ),
    (
        "the relay's media statistics are sans-IO: packets and the plan in, counts out",
        ["rtpstats.py"],
        ("vidim.aio", "vidim.allocator", "vidim.store", "vidim.metrics", "prometheus_client"),
    ),
    (
        "the protocol code knows nothing of metrics (vidim.metrics reads its events)",
        [
            "sip/*.py",
            "allocator/*.py",
            "focus/*.py",
            "ami/*.py",
            "core.py",
            "aio/*.py",
            "store/*.py",
        ],
        ("prometheus_client", "vidim.metrics"),
    ),
    (
        "the protocol code does no I/O",
        ["*.py", "sip/*.py", "allocator/*.py", "focus/*.py", "ami/*.py"],
        IO_MODULES,
    ),
]


@pytest.mark.parametrize(("what", "globs", "forbidden"), RULES, ids=[rule[0] for rule in RULES])
def test_layering_rule(what: str, globs: list[str], forbidden: tuple[str, ...]) -> None:
    paths = [p for p in _modules(*globs) if p.name != "__main__.py"]
    assert paths, f"no files for {what}"
    assert _offending(paths, forbidden) == []


def test_only_the_codec_wrappers_import_ffmpeg() -> None:
    """PyAV (FFmpeg) stays behind vidim.focus.codecs' two interfaces; the mixer sees PCM."""
    paths = [p for p in _modules("*.py", "*/*.py") if p.name != "codecs.py"]
    assert _offending(paths, ("av",)) == []


def test_only_the_resolver_imports_dnspython() -> None:
    """DNS lookups are I/O: vidim.aio.resolver asks, vidim.sip.locate only chooses."""
    paths = [p for p in _modules("*.py", "*/*.py") if p.name != "resolver.py"]
    assert _offending(paths, ("dns",)) == []


def test_the_store_imports_nothing_of_vidim_but_the_core() -> None:
    """The store keeps the servers' records: it knows their contract (``vidim.core``'s
    RecordChange), not the servers, the SIP core or the asyncio layer."""
    allowed = ("vidim.core", "vidim.store")
    paths = _modules("store/*.py")
    assert paths
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in sorted(_imports(path, ROOT))
        if (name == "vidim" or name.startswith("vidim."))
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert wrong == []


def test_the_rules_catch_a_wrong_way_import(tmp_path: Path) -> None:
    """The checker itself: a relative import that climbs into the allocator is seen."""
    probe = tmp_path / "vidim" / "focus" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ..allocator import conference\nimport asyncio\n", encoding="utf-8")
    assert _offending([probe], ("vidim.allocator", "asyncio"), root=tmp_path) == [
        "vidim/focus/probe.py imports asyncio",
        "vidim/focus/probe.py imports vidim.allocator",
        "vidim/focus/probe.py imports vidim.allocator.conference",
    ]

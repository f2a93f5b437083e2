"""The public API: one import away, and every name the README and the docs show exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import vidim

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

#: What a library user needs without knowing the package layout (issue 14).
TOP_LEVEL = [
    "Allocator",
    "AllocatorConfig",
    "ConferenceFocus",
    "FocusConfig",
    "Mode",
    "Capabilities",
    "parse_message",
    "SIPParseError",
    "TransactionLayer",
    "DialogManager",
    "Address",
    "Request",
    "Response",
]


def _imports_shown() -> list[tuple[str, str, str]]:
    """(page, module, name) for every ``from vidim... import name`` in a python block."""
    found = []
    for page in PAGES:
        for block in _PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")):
            lines = [line for line in block.splitlines() if not line.startswith((" ", "\t"))]
            for line in lines:
                if not line.startswith(("from vidim", "import vidim")):
                    continue
                statement = line
                if line.rstrip().endswith("("):
                    end = block.index(")", block.index(line))
                    statement = block[block.index(line) : end + 1]
                node = ast.parse(statement).body[0]
                if isinstance(node, ast.ImportFrom) and node.module:
                    found += [(page.name, node.module, a.name) for a in node.names]
                elif isinstance(node, ast.Import):
                    found += [(page.name, a.name, "") for a in node.names]
    return found


SHOWN = _imports_shown()


def test_the_docs_show_imports() -> None:
    # The README's "Using the library" and the architecture walk show some at least.
    assert len(SHOWN) >= 5


@pytest.mark.parametrize(("page", "module", "name"), SHOWN)
def test_every_name_the_docs_show_imports(page: str, module: str, name: str) -> None:
    imported = importlib.import_module(module)
    if name:
        assert hasattr(imported, name), f"{page}: from {module} import {name}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_the_main_names_are_one_import_away(name: str) -> None:
    assert name in vidim.__all__
    assert getattr(vidim, name) is not None


@pytest.mark.parametrize(
    "package", ["vidim", "vidim.sip", "vidim.allocator", "vidim.focus", "vidim.aio"]
)
def test_every_exported_name_exists(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "a name is exported twice"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("package", ["vidim.allocator", "vidim.focus"])
def test_every_event_class_is_exported(package: str) -> None:
    """An event a core can emit is importable from its package."""
    events = importlib.import_module(f"{package}.events")
    module = importlib.import_module(package)
    classes = [
        name
        for name, value in vars(events).items()
        if isinstance(value, type) and value.__module__ == events.__name__
    ]
    assert classes
    assert sorted(set(classes) - set(module.__all__)) == []

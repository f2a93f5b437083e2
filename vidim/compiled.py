"""Which of vidim's modules run compiled by mypyc, and which ones a build compiles.

The hot path of a conference setup (parse, transactions, dialogs, the allocator,
the asyncio glue) is compiled ahead of time with mypyc from the type hints the
code already carries; the same files run unchanged as pure Python
(docs/performance-history.md, "Compiled with mypyc").  ``setup.py`` reads
:data:`COMPILED_MODULES` from this file without importing it.
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path
from typing import Final

__all__ = ["COMPILED_MODULES", "PURE_PYTHON_VARIABLE", "compiled_modules", "stale_modules"]

#: Set (to anything but "" or "0") when building to install pure Python only.
PURE_PYTHON_VARIABLE: Final = "VIDIM_PURE_PYTHON"

#: The modules ``setup.py`` compiles, as source paths from the project root.
COMPILED_MODULES: Final = (
    "vidim/sip/abnf.py",
    "vidim/sip/checks.py",
    "vidim/sip/errors.py",
    "vidim/sip/headers.py",
    "vidim/sip/ids.py",
    "vidim/sip/message.py",
    "vidim/sip/multipart.py",
    "vidim/sip/parser.py",
    "vidim/sip/salvage.py",
    "vidim/sip/uri.py",
    "vidim/sip/value.py",
    "vidim/sip/transaction.py",
    "vidim/sip/dialog.py",
    "vidim/allocator/allocator.py",
    "vidim/allocator/conference.py",
    "vidim/allocator/events.py",
    "vidim/allocator/modes.py",
    "vidim/allocator/profiles.py",
    "vidim/allocator/requests.py",
    "vidim/core.py",
    "vidim/sdp.py",
    "vidim/resource_lists.py",
    "vidim/overload.py",
    "vidim/xmlbody.py",
    "vidim/conference_info.py",
    "vidim/aio.py",
)


def module_name(path: str) -> str:
    """``vidim/sip/uri.py`` -> ``vidim.sip.uri``."""
    return path.removesuffix(".py").replace("/", ".")


def compiled_modules() -> list[str]:
    """The modules of :data:`COMPILED_MODULES` that this interpreter loaded as extensions.

    Empty for a pure-Python install.  Imports the modules it looks at.
    """
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names = []
    for path in COMPILED_MODULES:
        name = module_name(path)
        __import__(name)
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if origin.endswith(suffixes):
            names.append(name)
    return names


def stale_modules(root: Path) -> list[str]:
    """The modules of :data:`COMPILED_MODULES` whose source under ``root`` is newer than their code.

    The code of every module lives in the group library ``vidim/native__mypyc*.so``,
    which a build rewrites whenever a source changed; the per-module ``.so`` files
    only load it and may keep an older date.  So a module is stale when its source
    is newer than the group library (or than its own ``.so``, in a build without a
    group).  Modules without an extension here are not stale: they run from source.
    """
    groups = [path.stat().st_mtime for path in (root / "vidim").glob("native__mypyc*.so")]
    group = max(groups) if groups else None
    stale = []
    for path in COMPILED_MODULES:
        source = root / path
        for extension in source.parent.glob(source.stem + ".*.so"):
            built = group if group is not None else extension.stat().st_mtime
            if source.stat().st_mtime > built:
                stale.append(path)
                break
    return stale

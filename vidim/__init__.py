"""vidim: turn an instant message into a video conference (a sans-IO SIP library).

The names most applications need are here; each subpackage has the rest:

* ``vidim.sip``: the SIP core (parser, transactions, dialogs);
* ``vidim.allocator``: the conference allocator (MESSAGE in, conference out);
* ``vidim.focus``: the built-in conference focus;
* ``vidim.aio``: the asyncio layer that puts any of them on sockets (not
  imported here: the protocol code never needs an event loop).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .sip import (
    Address,
    DialogManager,
    Request,
    Response,
    SIPParseError,
    TransactionLayer,
    parse_message,
)
from .vocabulary import Capabilities, Mode, effective_mode

if TYPE_CHECKING:
    from .allocator import Allocator, AllocatorConfig
    from .focus import ConferenceFocus, FocusConfig

__version__ = "0.1.0"

#: Loaded on first use (PEP 562), so that ``import vidim.focus`` does not load the
#: allocator, nor ``import vidim.allocator`` the focus: an application embedding
#: one server gets only that one.
_LAZY = {
    "Allocator": "vidim.allocator",
    "AllocatorConfig": "vidim.allocator",
    "ConferenceFocus": "vidim.focus",
    "FocusConfig": "vidim.focus",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidim' has no attribute {name!r}")


__all__ = [
    "Address",
    "Allocator",
    "AllocatorConfig",
    "Capabilities",
    "ConferenceFocus",
    "DialogManager",
    "FocusConfig",
    "Mode",
    "Request",
    "Response",
    "SIPParseError",
    "TransactionLayer",
    "__version__",
    "effective_mode",
    "parse_message",
]

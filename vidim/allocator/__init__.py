"""The conference allocator: from a SIP MESSAGE carrying a mode to a conference.

Sans-IO like :mod:`vidim.sip`: SIP messages and the time go in; messages to
send, one deadline and events come out.
"""

from __future__ import annotations

from ..vocabulary import Capabilities, Mode, effective_mode
from .allocator import Allocator, AllocatorConfig

__all__ = ["Allocator", "AllocatorConfig", "Capabilities", "Mode", "effective_mode"]

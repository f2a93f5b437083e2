"""The conference allocator: from a SIP MESSAGE carrying a mode to a conference.

Sans-IO like :mod:`vidim.sip`: SIP messages and the time go in; messages to
send, one deadline and events come out.
"""

from __future__ import annotations

from ..vocabulary import Capabilities, Mode, effective_mode

__all__ = ["Capabilities", "Mode", "effective_mode"]

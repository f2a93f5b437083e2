"""Asterisk's Manager Interface (AMI): the wire protocol and vidim's use of it, sans-IO.

:mod:`.protocol` reads and writes AMI; :mod:`.asterisk` is what the
``asterisk`` focus profile asks of Asterisk and learns from it.  The socket
is :mod:`vidim.aio.ami`'s.
"""

from __future__ import annotations

from .asterisk import ANCHOR_KEY, AmiTrouble, AsteriskControl, LoggedIn, Presence, astdb_family
from .protocol import AmiConnection, AmiEvent, AmiGreeting, AmiProtocolError, AmiResponse

__all__ = [
    "ANCHOR_KEY",
    "AmiConnection",
    "AmiEvent",
    "AmiGreeting",
    "AmiProtocolError",
    "AmiResponse",
    "AmiTrouble",
    "AsteriskControl",
    "LoggedIn",
    "Presence",
    "astdb_family",
]

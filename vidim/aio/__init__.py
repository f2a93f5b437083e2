"""The asyncio layer: the only part of vidim that touches sockets, clocks and the event loop.

* :class:`SipServer` (``server.py``): UDP, TCP and TLS sockets and one timer
  around any sans-IO SIP core (the allocator, the focus, or your own);
* :class:`TlsSettings` (``tls.py``): its TLS certificate, key and peer verification;
* :class:`RtpRelay` (``rtp.py``): the UDP sockets that carry the built-in
  focus's media;
* :class:`FocusMedia` (``focus.py``): keeps an :class:`RtpRelay` on the
  built-in focus's forwarding plan;
* :class:`~vidim.aio.ami.AsteriskAmi` (``ami.py``): the ``asterisk`` profile's
  control channel, Asterisk's manager interface (imported from its module);
* :class:`Persistence` (``persistence.py``): write-ahead of a core's records
  to a state store (:mod:`vidim.store`), and :func:`restore_core` at start.
"""

from __future__ import annotations

from .cluster import Cluster
from .focus import FocusMedia
from .persistence import Persistence, restore_core
from .protocols import FollowUpRouter, SipCore, SipMessageCore, StatefulCore
from .rtp import PortStats, PortsUnavailableError, RtpRelay
from .server import DEFAULT_PORT, SipServer, serve_forever_until_signal
from .tls import DEFAULT_TLS_PORT, TlsSettings

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "Cluster",
    "FocusMedia",
    "FollowUpRouter",
    "Persistence",
    "PortStats",
    "PortsUnavailableError",
    "RtpRelay",
    "SipCore",
    "SipMessageCore",
    "SipServer",
    "StatefulCore",
    "TlsSettings",
    "restore_core",
    "serve_forever_until_signal",
]

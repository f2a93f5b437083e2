"""What an allocator is told: one frozen dataclass, every default documented in docs/."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sip import Address, ClientCredentials, DigestRealm, TransactionConfig
from .profiles import FocusProfile
from .requests import RequestPolicy

__all__ = ["AllocatorConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocatorConfig:
    """Everything an :class:`~vidim.allocator.Allocator` is told."""

    #: Where peers reach the allocator, written in its Vias, Contacts and Call-IDs:
    #: the address it listens on, or the one advertised for it (the daemon's
    #: ``--advertise``; never 0.0.0.0 or ::).  Nothing is bound here: the server
    #: that runs the allocator binds.
    local: Address = field(default_factory=lambda: Address("127.0.0.1", 5070))
    #: Request forms, trust and limits (see :mod:`vidim.allocator.requests`).
    requests: RequestPolicy = field(default_factory=RequestPolicy)
    #: Focus URIs in failover order.
    focus_uris: tuple[str, ...] = ("sip:conference-factory@127.0.0.1:5080",)
    profile: FocusProfile = FocusProfile.RFC4579
    #: The IM server: all IMs and probes go through it when set.  A URI
    #: (``sip:192.0.2.1;transport=tcp``, ``sips:...``) says how to reach it; an
    #: address names its transport (UDP: TCP too for a large request, RFC 3261 18.1.1).
    proxy: Address | str | None = None
    #: Capability probing with OPTIONS.
    probe: bool = True
    probe_timeout: float = 2.0
    #: How long a focus has to answer the INVITE before the next one is tried.
    focus_timeout: float = 8.0
    #: A conference nobody joined within this time ends; only where the allocator
    #: can know who joined (:attr:`knows_who_joined`), never on a guess.
    idle_timeout: float = 300.0
    #: The application reports who joins and leaves (:meth:`Allocator.report_presence`)
    #: for a focus that sends no conference events: the ``asterisk`` profile with AMI.
    presence_reported: bool = False
    #: In-dialog OPTIONS on the anchor to check that the focus lives.
    keepalive_interval: float = 30.0
    subscription_expires: int = 3600
    #: New conferences per requester per window.
    rate_limit: int = 5
    rate_window: float = 60.0
    max_conferences: int = 100_000
    transactions: TransactionConfig = field(default_factory=TransactionConfig)
    #: Who vidim is when a proxy or a focus challenges its requests (401/407);
    #: None: a challenge is a failure (see :mod:`vidim.allocator.authentication`).
    credentials: ClientCredentials | None = None
    #: Challenge MESSAGEs from untrusted sources (401, Digest with SHA-256 and
    #: MD5) and serve them once authenticated as their From user, instead of
    #: refusing them (``requests.require_trusted_source``).  None: no challenges.
    challenge: DigestRealm | None = None
    #: The port of the TLS listener of the server that runs the allocator, on
    #: ``local.host``: requests for ``sips:`` and ``transport=tls`` URIs go over
    #: TLS, their Via naming this port.  None (the server has no TLS): they are
    #: refused (:class:`~vidim.allocator.events.TransportUnavailable`, a 503).
    tls_port: int | None = None

    @property
    def knows_who_joined(self) -> bool:
        """Whether joins are seen (RFC 4575 events or reported presence): the idle rule's ground."""
        return self.profile is FocusProfile.RFC4579 or self.presence_reported

    @property
    def warning_host(self) -> str:
        return self.requests.domain

"""What a :class:`~vidim.focus.ConferenceFocus` is told, and what it shows of a conference."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from ..sip import Address, LocalProtocolError, TransactionConfig
from ..vocabulary import LOOPBACK_NETWORKS, IPNetwork, Mode
from .lifecycle import ConferenceState, ParticipantState

__all__ = ["NOT_INVITED", "ConferenceSnapshot", "FocusConfig"]

#: The Warning text of the 403 for a caller who is not an invitee.
NOT_INVITED = "not invited to this conference"


@dataclass(frozen=True, slots=True, kw_only=True)
class FocusConfig:
    """Everything a :class:`ConferenceFocus` is told; every default is documented here."""

    #: Where peers reach the focus, written in its Vias, Contacts and conference
    #: URIs (host:port): its listen address, or the one advertised for it (the
    #: daemon's ``--advertise``; never 0.0.0.0 or ::).  Nothing is bound here.
    local: Address = field(default_factory=lambda: Address("127.0.0.1", 5080))
    #: Request-URI users that create conferences (RFC 4579 conference factory URIs).
    factory_users: tuple[str, ...] = ("conference-factory",)
    #: The address written into SDP answers, where the RTP relay binds.
    media_address: str = "127.0.0.1"
    #: Inclusive RTP port range; each stream takes an even/odd pair, chosen at random
    #: (5000 pairs by default, as Asterisk's rtp.conf; docs/security.md).
    rtp_ports: tuple[int, int] = (10000, 20000)
    #: Picks which of ``n`` free port pairs a new stream gets: ``secrets.randbelow``;
    #: ``vidim.focus.media.lowest_free`` for the lowest first (tests, captures).
    choose_port: Callable[[int], int] = secrets.randbelow
    #: A conference ends this long after its creation, whoever is in it.
    conference_ttl: float = 3600.0
    #: Sources that may create conferences (factory INVITE: the allocator), whose
    #: P-Asserted-Identity is believed, and who may SUBSCRIBE without a key.
    trusted_networks: tuple[IPNetwork, ...] = LOOPBACK_NETWORKS
    #: The longest conference-event subscription granted (seconds).
    max_subscription_expires: int = 3600
    #: The mode of a list entry without ``vidim:mode`` (a plain RFC 5366 client).
    default_mode: Mode = Mode.VIDEO
    #: More live conferences than this: factory INVITEs get 503.
    max_conferences: int = 1000
    transactions: TransactionConfig = field(default_factory=TransactionConfig)

    def __post_init__(self) -> None:
        low, high = self.rtp_ports
        if not 0 < low <= high <= 65535:
            raise LocalProtocolError(f"bad RTP port range {low}-{high}")
        if self.conference_ttl <= 0 or self.max_subscription_expires < 0:
            raise LocalProtocolError("conference_ttl must be > 0, subscription expiry >= 0")

    @property
    def warning_host(self) -> str:
        host = self.local.host
        return f"[{host}]:{self.local.port}" if ":" in host else f"{host}:{self.local.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceSnapshot:
    """A read-only view of one live conference."""

    uri: str
    #: (uri, mode) of every invitee, in list order.
    invitees: tuple[tuple[str, Mode], ...]
    #: URIs of the participants in a call now.
    connected: tuple[str, ...]
    subscribers: int
    created_at: float
    ends_at: float
    state: ConferenceState = ConferenceState.OPEN
    #: (uri, state) of every invitee, in list order.
    participants: tuple[tuple[str, ParticipantState], ...] = ()

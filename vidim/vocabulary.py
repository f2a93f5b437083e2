"""The words every layer shares: communication modes, capabilities, trust.

The allocator, the focus, SDP and the XML bodies all speak of modes; both
servers decide whether a source address is trusted.  This module sits below
all of them and imports nothing from vidim, so that none of them has to
import another to say what a mode is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "LOOPBACK_NETWORKS",
    "Capabilities",
    "IPNetwork",
    "Mode",
    "effective_mode",
    "is_trusted",
    "parse_networks",
]


class Mode(StrEnum):
    """What media an invitee gets (DESIGN.md, "Communication modes")."""

    #: audio and video, send and receive
    VIDEO = "video"
    #: audio only, send and receive
    AUDIO = "audio"
    #: audio and video, receive only
    WATCH = "watch"
    #: no media: the invitation and roster updates by IM only
    CHAT = "chat"

    @property
    def has_audio(self) -> bool:
        return self is not Mode.CHAT

    @property
    def has_video(self) -> bool:
        return self in (Mode.VIDEO, Mode.WATCH)

    @property
    def sends_media(self) -> bool:
        return self in (Mode.VIDEO, Mode.AUDIO)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an invitee's device can do, as probing found out."""

    audio: bool
    video: bool

    @classmethod
    def unreachable(cls) -> Capabilities:
        """Nothing answered: reachable by IM only."""
        return cls(audio=False, video=False)


def effective_mode(requested: Mode, capabilities: Capabilities | None) -> Mode:
    """Lower ``requested`` to what the device can do (video -> audio -> chat).

    ``None`` means nothing is known (probing is off): the request stands.  A
    mode is never raised, and ``watch`` never becomes a mode that sends: a
    watcher without video still only receives (its audio), and one without
    audio is reached by IM only.
    """
    if capabilities is None or requested is Mode.CHAT:
        return requested
    if not capabilities.audio:
        return Mode.CHAT
    if requested is Mode.VIDEO and not capabilities.video:
        return Mode.AUDIO
    return requested


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What both servers trust when nothing else is configured: this host only.
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8"``-style strings (or networks) as networks; ValueError when malformed."""
    return tuple(ipaddress.ip_network(network) for network in networks)


def is_trusted(host: str, networks: Iterable[IPNetwork]) -> bool:
    """Whether a source address lies in one of ``networks``.

    ``host`` is an address as a transport reports it: IPv4, IPv6 with or
    without brackets and zone (``[fe80::1%eth0]``), or IPv4 mapped into IPv6
    (``::ffff:10.0.0.1``, what a dual-stack socket reports for an IPv4 peer),
    which is checked as the IPv4 address it carries.  A name is never trusted.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)

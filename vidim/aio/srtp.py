"""SRTP for the RTP relay: libsrtp sessions per focus port (``pylibsrtp``).

The keys come from the SDES negotiation (:mod:`vidim.sdes`, carried on each
:class:`~vidim.focus.media.Route` as :class:`~vidim.sdes.SrtpKeys`); this is
only where the cipher runs.  The relay calls two hooks per datagram:

* :meth:`SrtpPorts.unprotect` on what arrives at a port whose participant
  speaks SRTP: the plain packet, or None when it does not authenticate (a
  wrong key, a replay, a stranger's guess), which the relay drops and counts;
* :meth:`SrtpPorts.protect` on what leaves a port towards such a participant.

A plain participant's ports pass packets through unchanged, so a conference
mixes SRTP and RTP phones: the focus opens each SRTP packet and protects it
again with the receiver's key (it is a trusted middle, as every SDES
conference bridge is).

Each port has one inbound and one outbound libsrtp session, kept across
plans while its keys stay the same (libsrtp's rollover counter and replay
window must live as long as the stream); new keys (a re-INVITE's answer)
start new sessions.  RTCP ports use SRTCP with the same master keys; a
participant that multiplexes RTCP (RFC 5761) sends and gets SRTCP on its RTP
port, which the relay tells apart (``rtcp`` below) and the port's one pair of
sessions opens and protects alike (libsrtp keeps SRTP and SRTCP state apart
per SSRC).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pylibsrtp import Error, Policy, Session

from ..focus.media import Route
from ..sdes import SrtpKeys

__all__ = ["SrtpPorts"]

_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def _session(key: bytes, suite: str, ssrc_type: int) -> Session:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=_PROFILES[suite])
    # The relay forwards each packet once; a participant's retransmission
    # (same sequence number) must not make the outbound session refuse it.
    policy.allow_repeat_tx = True
    return Session(policy)


@dataclass(slots=True)
class _PortSessions:
    keys: SrtpKeys
    inbound: Session
    outbound: Session


class SrtpPorts:
    """The libsrtp sessions of every SRTP port in the relay's plan."""

    def __init__(self) -> None:
        self._ports: dict[int, _PortSessions] = {}

    def apply(self, routes: Iterable[Route]) -> None:
        """Key the plan's SRTP ports; keep sessions whose keys did not change, drop the rest."""
        ports: dict[int, _PortSessions] = {}
        for route in routes:
            keys = route.srtp
            if keys is None:
                continue
            old = self._ports.get(route.port)
            if old is not None and old.keys == keys:
                ports[route.port] = old
                continue
            ports[route.port] = _PortSessions(
                keys,
                _session(keys.remote_key, keys.suite, Policy.SSRC_ANY_INBOUND),
                _session(keys.local_key, keys.suite, Policy.SSRC_ANY_OUTBOUND),
            )
        self._ports = ports

    def unprotect(self, port: int, rtcp: bool, data: bytes) -> bytes | None:
        """The plain packet that arrived on ``port``; None when it does not authenticate."""
        sessions = self._ports.get(port)
        if sessions is None:
            return data
        try:
            if rtcp:
                return sessions.inbound.unprotect_rtcp(data)
            return sessions.inbound.unprotect(data)
        except (Error, ValueError):
            return None

    def protect(self, port: int, rtcp: bool, data: bytes) -> bytes | None:
        """``data`` as it leaves ``port`` (protected when its participant speaks SRTP).

        None when libsrtp refuses it (not RTP/RTCP, too long): the relay drops it.
        """
        sessions = self._ports.get(port)
        if sessions is None:
            return data
        try:
            if rtcp:
                return sessions.outbound.protect_rtcp(data)
            return sessions.outbound.protect(data)
        except (Error, ValueError):
            return None

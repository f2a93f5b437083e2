"""A focus conference as plain JSON data, and back: what a state store keeps (issue 16).

One record per conference holds everything a restarted focus needs to go
on as if it had never stopped: the conference and its invitees' states,
every dialog (anchor, participants' calls, roster subscriptions: CSeq
numbers, remote targets, route sets), each call's media (the focus's RTP
ports, the streams, the SDP answer), the roster, the subscriptions'
NOTIFY versions, the 200s still resent until their ACK, and the deadlines
as absolute times.  The forwarding plan is not stored: it is computed again
from the calls.  Transactions are not stored either: one in flight when
the focus stopped is gone (see docs/focus.md, "Restart").

Texts that go into header lines are refused with a control character in
them, as :meth:`vidim.allocator.Allocator.restore` does: a record could then
split a header line of a request the focus builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..conference_info import ElementState, UserInfo
from ..sdes import SrtpKeys
from ..sip import (
    Address,
    Dialog,
    DialogId,
    LocalProtocolError,
    Response,
    SIPParseError,
    parse_message,
)
from ..sip.dialog import LocalVia
from ..vocabulary import Mode
from .keyframes import KeyframeFeedback
from .lifecycle import ConferenceState, ParticipantState
from .media import StreamInfo
from .negotiation import address_of_record
from .records import Call, Conference, Invitee, Resend, Subscription

__all__ = ["FORMAT", "Stored", "from_record", "to_record"]

#: The record's layout version; bump it when the layout changes.
FORMAT = 1

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: Keys whose texts are whole messages or bodies (line breaks are theirs); parsed on the way in.
_MULTILINE_KEYS = frozenset(("answer", "response"))
_ELEMENT_STATES: dict[str, ElementState] = {
    "full": "full",
    "partial": "partial",
    "deleted": "deleted",
}


@dataclass(frozen=True, slots=True)
class Stored:
    """A conference read back from its record, with the 200s it was resending."""

    conference: Conference
    resends: tuple[Resend, ...]


# -- out -------------------------------------------------------------------------------


def _address(address: Address) -> dict[str, Any]:
    return {"host": address.host, "port": address.port, "transport": address.transport}


def _bytes(data: bytes) -> str:
    # latin-1 maps every byte to one character: any body goes to JSON and back unchanged.
    return data.decode("latin-1")


def _stream(stream: StreamInfo) -> dict[str, Any]:
    return {
        "kind": stream.kind,
        "local_port": stream.local_port,
        "remote_host": stream.remote_host,
        "remote_port": stream.remote_port,
        "remote_rtcp_port": stream.remote_rtcp_port,
        "sends": stream.sends,
        "receives": stream.receives,
        "payload_types": [[key, pt] for key, pt in stream.payload_types],
        **({"srtp": _srtp(stream.srtp)} if stream.srtp is not None else {}),
        "feedback": {"pli": stream.feedback.pli, "fir": stream.feedback.fir},
        "rtcp_mux": stream.rtcp_mux,
        "max_bit_rate": stream.max_bit_rate,
    }


def _srtp(keys: SrtpKeys) -> dict[str, str]:
    # The keys are as secret as the store: a restarted focus needs them to go on.
    return {"suite": keys.suite, "local": keys.local_key.hex(), "remote": keys.remote_key.hex()}


def _user(user: UserInfo) -> dict[str, Any]:
    return {
        "entity": user.entity,
        "display_name": user.display_name,
        "state": user.state,
        "status": user.status,
        "mode": user.mode.value if user.mode is not None else None,
        "media": list(user.media),
    }


def to_record(conference: Conference, resends: list[Resend]) -> dict[str, Any]:
    """The record of a live conference (``resends``: its 200s awaiting their ACK)."""
    return {
        "format": FORMAT,
        "user": conference.user,
        "uri": conference.uri,
        "state": conference.state.value,
        "created_at": conference.created_at,
        "ends_at": conference.ends_at,
        "session_id": conference.session_id,
        "sdp_version": conference.sdp_version,
        "anchor": conference.anchor.to_dict(),
        "anchor_source": _address(conference.anchor_source),
        "invitees": [
            {
                "uri": i.uri,
                "mode": i.mode.value,
                "credential": i.credential,
                "display_name": i.display_name,
                "state": i.state.value,
            }
            for i in conference.invitees.values()
        ],
        "calls": [
            {
                "uri": call.uri,
                "dialog": call.dialog.to_dict(),
                "source": _address(call.source),
                "streams": [_stream(s) for s in call.streams],
                "ports": dict(call.ports),
                "answer": _bytes(call.answer),
                "session_id": call.session_id,
                "version": call.version,
                "unacknowledged": sorted(call.unacknowledged),
            }
            for call in conference.calls.values()
        ],
        "subscriptions": [
            {
                "dialog": sub.dialog.to_dict(),
                "source": _address(sub.source),
                "subscriber": sub.subscriber,
                "event": sub.event,
                "expires_at": sub.expires_at,
                "version": sub.version,
            }
            for sub in conference.subscriptions
        ],
        "roster": [_user(user) for user in conference.roster.values()],
        "resends": [
            {
                "response": _bytes(entry.response.to_bytes()),
                "destination": _address(entry.destination),
                "dialog": [entry.dialog.call_id, entry.dialog.local_tag, entry.dialog.remote_tag],
                "interval": entry.interval,
                "deadline": entry.deadline,
                "give_up": entry.give_up,
            }
            for entry in resends
        ],
    }


# -- in --------------------------------------------------------------------------------


def _check_texts(value: object, key: str = "") -> None:
    if isinstance(value, str):
        if key not in _MULTILINE_KEYS and _CONTROL_RE.search(value):
            raise LocalProtocolError(f"control character in focus record: {value!r}")
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_texts(item, str(name))
    elif isinstance(value, list):
        for item in value:
            _check_texts(item, key)


def _read_address(data: dict[str, Any]) -> Address:
    return Address(str(data["host"]), int(data["port"]), str(data["transport"]))


def _read_stream(data: dict[str, Any]) -> StreamInfo:
    return StreamInfo(
        kind=str(data["kind"]),
        local_port=int(data["local_port"]),
        remote_host=str(data["remote_host"]),
        remote_port=int(data["remote_port"]),
        remote_rtcp_port=int(data["remote_rtcp_port"]),
        sends=bool(data["sends"]),
        receives=bool(data["receives"]),
        payload_types=tuple((str(key), int(pt)) for key, pt in data["payload_types"]),
        srtp=_read_srtp(data["srtp"]) if data.get("srtp") is not None else None,
        feedback=KeyframeFeedback(**{k: bool(v) for k, v in data.get("feedback", {}).items()}),
        rtcp_mux=bool(data.get("rtcp_mux", False)),
        max_bit_rate=int(rate) if (rate := data.get("max_bit_rate")) is not None else None,
    )


def _read_srtp(data: dict[str, Any]) -> SrtpKeys:
    return SrtpKeys(
        str(data["suite"]), bytes.fromhex(str(data["local"])), bytes.fromhex(str(data["remote"]))
    )


def _read_user(data: dict[str, Any]) -> UserInfo:
    return UserInfo(
        entity=str(data["entity"]),
        display_name=None if data["display_name"] is None else str(data["display_name"]),
        state=_ELEMENT_STATES[str(data["state"])],
        status=None if data["status"] is None else str(data["status"]),
        mode=None if data["mode"] is None else Mode(data["mode"]),
        media=tuple(str(kind) for kind in data["media"]),
    )


def _read_resend(data: dict[str, Any], conference: str) -> Resend:
    response = parse_message(str(data["response"]).encode("latin-1"))
    if not isinstance(response, Response):
        raise ValueError("a resent answer that is not a response")
    call_id, local_tag, remote_tag = (str(part) for part in data["dialog"])
    return Resend(
        response=response,
        destination=_read_address(data["destination"]),
        conference=conference,
        dialog=DialogId(call_id, local_tag, remote_tag),
        interval=float(data["interval"]),
        deadline=float(data["deadline"]),
        give_up=float(data["give_up"]),
    )


def _read(data: dict[str, Any], local_via: LocalVia) -> Stored:
    user = str(data["user"])
    invitees = {}
    for item in data["invitees"]:
        uri = str(item["uri"])
        invitees[uri] = Invitee(
            uri=uri,
            aor=address_of_record(uri),
            mode=Mode(item["mode"]),
            credential=None if item["credential"] is None else str(item["credential"]),
            display_name=None if item["display_name"] is None else str(item["display_name"]),
            state=ParticipantState(item["state"]),
        )
    calls = {}
    for item in data["calls"]:
        invitee = invitees[str(item["uri"])]
        calls[invitee.uri] = Call(
            invitee=invitee,
            dialog=Dialog.from_dict(item["dialog"], local_via=local_via),
            source=_read_address(item["source"]),
            streams=tuple(_read_stream(s) for s in item["streams"]),
            ports={str(kind): int(port) for kind, port in item["ports"].items()},
            answer=str(item["answer"]).encode("latin-1"),
            session_id=int(item["session_id"]),
            version=int(item["version"]),
            unacknowledged={int(cseq) for cseq in item["unacknowledged"]},
        )
    conference = Conference(
        user=user,
        uri=str(data["uri"]),
        anchor=Dialog.from_dict(data["anchor"], local_via=local_via),
        anchor_source=_read_address(data["anchor_source"]),
        created_at=float(data["created_at"]),
        ends_at=float(data["ends_at"]),
        invitees=invitees,
        calls=calls,
        subscriptions=[
            Subscription(
                dialog=Dialog.from_dict(item["dialog"], local_via=local_via),
                source=_read_address(item["source"]),
                subscriber=str(item["subscriber"]),
                event=str(item["event"]),
                expires_at=float(item["expires_at"]),
                version=int(item["version"]),
            )
            for item in data["subscriptions"]
        ],
        roster={user.entity: user for user in map(_read_user, data["roster"])},
        session_id=int(data["session_id"]),
        sdp_version=int(data["sdp_version"]),
        state=ConferenceState(data["state"]),
    )
    resends = tuple(_read_resend(item, user) for item in data["resends"])
    return Stored(conference, resends)


def from_record(data: dict[str, Any], *, local_via: LocalVia) -> Stored:
    """Read a record written by :func:`to_record`; the dialogs get ``local_via``.

    Raises :class:`~vidim.sip.LocalProtocolError` for a record of another
    layout or version, with a control character in a header text, or that is
    not a record at all.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise LocalProtocolError(f"unknown focus record format {found!r}")
    _check_texts(data)
    try:
        return _read(data, local_via)
    except LocalProtocolError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, SIPParseError) as error:
        raise LocalProtocolError(f"not a focus conference record: {error!r}") from error

"""Builders for dialog tests: the peer's side of the wire, made by hand.

Everything that crosses the "network" goes through :func:`wire`, so the
dialog layer only ever sees what the parser makes of real bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from vidim.sip import Dialog, DialogManager, Request, Response, Via, make_response, parse_message
from vidim.sip.ids import new_branch

#: Our Via template (the allocator at 10.0.0.1).
LOCAL_VIA = Via("UDP", "10.0.0.1", 5060, (("rport", None),))
LOCAL_CONTACT = "<sip:vidim@10.0.0.1:5060>"
ALICE = '"Vidim" <sip:vidim@example.com>'
FOCUS_AOR = "<sip:conf-factory@focus.example.com>"
#: The focus's address, as its Contact says.
FOCUS_CONTACT = "<sip:conf42@192.0.2.50:5070;transport=udp>"
FOCUS_CONTACT_2 = "<sip:conf42@192.0.2.51:5070>"

M = TypeVar("M", Request, Response)


def wire(message: M) -> M:
    """Serialize and parse back, as if the message had crossed the network."""
    parsed = parse_message(message.to_bytes())
    assert isinstance(parsed, type(message))
    return parsed


def manager() -> DialogManager:
    return DialogManager(local_via=LOCAL_VIA)


def invite(mgr: DialogManager, *, body: bytes = b"v=0\r\n") -> Request:
    return wire(
        mgr.create_initial_request(
            "INVITE",
            "sip:conf-factory@focus.example.com",
            from_addr=ALICE,
            to_addr=FOCUS_AOR,
            contact=LOCAL_CONTACT,
            body=body,
            content_type="application/sdp",
        )
    )


def subscribe(mgr: DialogManager, *, event: str = "conference") -> Request:
    return wire(
        mgr.create_initial_request(
            "SUBSCRIBE",
            "sip:conf42@focus.example.com",
            from_addr=ALICE,
            to_addr="<sip:conf42@focus.example.com>",
            contact=LOCAL_CONTACT,
            headers=[
                ("Event", event),
                ("Expires", "3600"),
                ("Accept", "application/conference-info+xml"),
            ],
        )
    )


def respond(
    request: Request,
    status: int,
    *,
    tag: str | None,
    contact: str | None = FOCUS_CONTACT,
    record_route: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """The peer's response: Record-Route copied as a proxy chain would leave it."""
    extra = [("Record-Route", rr) for rr in record_route]
    if contact is not None:
        extra.append(("Contact", contact))
    return wire(make_response(request, status, to_tag=tag, headers=[*extra, *headers]))


def peer_request(
    dialog: Dialog,
    method: str,
    seq: int,
    *,
    contact: str | None = FOCUS_CONTACT,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Request:
    """A request the peer sends inside ``dialog`` (its From is our To and back)."""
    items = [
        ("Via", f"SIP/2.0/UDP 192.0.2.50:5070;branch={new_branch()}"),
        ("Max-Forwards", "70"),
        ("From", str(dialog.remote_party)),
        ("To", str(dialog.local_party)),
        ("Call-ID", dialog.call_id),
        ("CSeq", f"{seq} {method}"),
    ]
    if contact is not None:
        items.append(("Contact", contact))
    items += headers
    return wire(Request(method, dialog.local_contact.uri, items, body))


def notify_for(
    subscribe_request: Request,
    *,
    tag: str,
    state: str = "active;expires=600",
    seq: int = 1,
    event: str = "conference",
    record_route: Iterable[str] = (),
    contact: str = FOCUS_CONTACT,
) -> Request:
    """A NOTIFY the notifier sends for our SUBSCRIBE, before any dialog exists on our side."""
    items = [
        ("Via", f"SIP/2.0/UDP 192.0.2.50:5070;branch={new_branch()}"),
        ("Max-Forwards", "70"),
        *(("Record-Route", rr) for rr in record_route),
        ("From", str(subscribe_request.to_addr.with_tag(tag))),
        ("To", str(subscribe_request.from_addr)),
        ("Call-ID", subscribe_request.call_id),
        ("CSeq", f"{seq} NOTIFY"),
        ("Contact", contact),
        ("Event", event),
        ("Subscription-State", state),
        ("Content-Type", "application/conference-info+xml"),
    ]
    return wire(Request("NOTIFY", "sip:vidim@10.0.0.1:5060", items, b"<conference-info/>"))


def confirmed_invite_dialog(
    mgr: DialogManager, *, record_route: Iterable[str] = (), tag: str = "focus1"
) -> tuple[Dialog, Request, Response]:
    """INVITE, 200 with ``record_route``: the confirmed dialog, the INVITE and the 200."""
    request = invite(mgr)
    ok = respond(request, 200, tag=tag, record_route=record_route)
    dialog = mgr.receive_response(request, ok)
    assert dialog is not None
    return dialog, request, ok

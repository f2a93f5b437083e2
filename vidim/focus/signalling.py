"""The focus's dialogs, its deadlines, and everything it sends on them.

One object shared by the parts of the focus (the conference's anchor,
participants, subscriptions): the dialog manager and whose each dialog is,
the one :class:`~vidim.timers.Timers`, responses and refusals, in-dialog
requests, and 200s to INVITEs resent over UDP until their ACK (RFC 3261
13.3.1.4: above the transaction layer, which forgets an INVITE at its 2xx).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from ..sip import (
    Address,
    Dialog,
    DialogId,
    DialogManager,
    LocalProtocolError,
    Request,
    Response,
    ServerPolicy,
    SIPParseError,
    SipURI,
    TransactionId,
    TransactionLayer,
    Via,
    make_response,
    new_tag,
    request_destination,
    sent_over,
    summary,
    warning_value,
)
from ..timers import Timers
from ..vocabulary import is_trusted
from .config import FocusConfig
from .events import FocusEvent, MessageIgnored
from .records import Owner, Resend, TimerKey, TimerKind

__all__ = ["ALLOW", "POLICY", "Signalling"]

#: The methods the focus takes (its Allow header).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, SUBSCRIBE, INFO, UPDATE"
#: What the focus supports beyond RFC 3261 (RFC 5366's option tag).
POLICY = ServerPolicy(supported=frozenset({"recipient-list-invite"}))


class Signalling:
    """Dialogs, owners, timers and the sending side of a :class:`~vidim.focus.ConferenceFocus`."""

    def __init__(
        self, config: FocusConfig, layer: TransactionLayer, emit: Callable[[FocusEvent], None]
    ) -> None:
        self.config = config
        self.layer = layer
        self.emit = emit
        local = config.local
        self.warn = config.warning_host
        via = Via(local.transport, local.host, local.port, (("rport", None),))
        self.dialogs = DialogManager(local_via=via, warn_agent=self.warn)
        #: Whose each live dialog is: a conference's anchor, a participant's call, a subscription.
        self.owners: dict[DialogId, Owner] = {}
        self.timers: Timers[TimerKey] = Timers()
        #: 200s awaiting their ACK, by (Call-ID, CSeq number).
        self.resends: dict[tuple[str, int], Resend] = {}

    def trusted(self, source: Address) -> bool:
        """Whether ``source`` is in the trusted networks (its P-Asserted-Identity believed)."""
        return is_trusted(source.host, self.config.trusted_networks)

    # -- answers ---------------------------------------------------------------------
    def respond(self, response: Response, now: float) -> None:
        try:
            self.layer.send_response(response, now)
        except LocalProtocolError as error:  # the transaction is gone (CANCEL raced us)
            self.emit(MessageIgnored(reason=error.reason, summary=summary(response)))

    def refuse(
        self,
        request: Request,
        status: int,
        reason: str,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
        *,
        dialog: Dialog | None = None,
    ) -> None:
        """Answer a request with an error and a Warning saying why (in ``dialog``, if given)."""
        all_headers = [("Warning", warning_value(self.warn, reason)), *headers]
        if dialog is None:
            response = make_response(request, status, to_tag=new_tag(), headers=all_headers)
        else:
            response = dialog.create_response(request, status, headers=all_headers)
        self.respond(response, now)

    def respond_2xx(
        self,
        conference: str,
        dialog: Dialog,
        request: Request,
        response: Response,
        source: Address,
        now: float,
    ) -> bool:
        """Send a 2xx; True when it answers an INVITE over UDP, resent until its ACK."""
        self.respond(response, now)
        if request.method != "INVITE" or source.reliable:
            return False
        t1 = self.config.transactions.t1
        cseq = request.cseq.seq
        entry = Resend(
            response=response,
            destination=source,
            conference=conference,
            dialog=dialog.id,
            interval=t1,
            deadline=now + t1,
            give_up=now + 64 * t1,
        )
        self.resends[(request.call_id, cseq)] = entry
        self.timers.arm(TimerKey(TimerKind.RESEND, dialog.id, cseq), entry.deadline)
        return True

    def resend(self, key: TimerKey, now: float) -> Resend | None:
        """Resend the 200 ``key`` is for; the entry when it is given up (64*T1 without ACK)."""
        entry = self.resends.get((key.dialog.call_id, key.cseq))
        if entry is None:
            return None
        if now >= entry.give_up:
            del self.resends[(key.dialog.call_id, key.cseq)]
            return entry
        self.layer.send_stateless(entry.response, entry.destination)
        entry.interval = min(2 * entry.interval, self.config.transactions.t2)
        entry.deadline = min(now + entry.interval, entry.give_up)
        self.timers.arm(key, entry.deadline)
        return None

    def acknowledge(self, ack: Request) -> tuple[Resend, int] | None:
        """Stop resending the 200 an ACK acknowledges: the entry and its CSeq, if it had one."""
        try:
            key = (ack.call_id, ack.cseq.seq)
        except SIPParseError:
            return None
        entry = self.resends.pop(key, None)
        if entry is None:
            return None
        self.timers.cancel(TimerKey(TimerKind.RESEND, entry.dialog, key[1]))
        return entry, key[1]

    def resend_restored(self, entry: Resend) -> None:
        """Resume resending a 200 read back from a stored record, at its stored deadline."""
        cseq = entry.response.cseq.seq
        self.resends[(entry.response.call_id, cseq)] = entry
        self.timers.arm(TimerKey(TimerKind.RESEND, entry.dialog, cseq), entry.deadline)

    def answer_again(self, invite: Request, source: Address) -> bool:
        """A retransmitted INVITE whose 200 is still resent: that 200 again, True.

        The transaction layer absorbs these while it holds the INVITE's
        transaction (RFC 6026 Accepted); a restarted focus no longer does,
        and must not take the INVITE for a new call or a new conference.
        """
        try:
            entry = self.resends.get((invite.call_id, invite.cseq.seq))
        except SIPParseError:
            return False
        if entry is None or entry.response.from_addr.tag != invite.from_addr.tag:
            return False
        self.layer.send_stateless(entry.response, source)
        return True

    def forget_resends(self, *, dialog: DialogId | None = None, conference: str = "") -> None:
        """Stop resending the 200s of one dialog, or of every dialog of one conference."""
        for (call_id, cseq), entry in list(self.resends.items()):
            if entry.dialog == dialog or entry.conference == conference:
                del self.resends[(call_id, cseq)]
                self.timers.cancel(TimerKey(TimerKind.RESEND, entry.dialog, cseq))

    # -- requests --------------------------------------------------------------------
    def destination(self, dialog: Dialog, fallback: Address, request: Request) -> Address:
        """Where an in-dialog request goes: the first route or the remote target.

        Over the transport the URI names, else over the one the dialog's
        request came by (``fallback``'s), else TCP for a large request
        (:func:`vidim.sip.request_destination`).  A host that is not an IP
        literal (name resolution is the I/O layer's business) falls back to
        where the dialog's request came from.
        """
        target, routes = dialog.request_target()
        uri = routes[0].uri if routes else target
        if not isinstance(uri, SipURI):
            return fallback
        host = uri.param("maddr") or uri.host
        host = host[1:-1] if host.startswith("[") else host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return fallback
        return request_destination(request, uri, default_transport=fallback.transport)

    def send_in_dialog(
        self,
        dialog: Dialog,
        fallback: Address,
        method: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[TransactionId, Request] | None:
        """Send a request in ``dialog``; None when the dialog has ended meanwhile."""
        try:
            request = dialog.create_request(
                method, headers=headers, body=body, content_type=content_type
            )
        except LocalProtocolError:
            return None
        destination = self.destination(dialog, fallback, request)
        # RFC 3261 18.1.1: the Via says how it goes (the dialogs' Via says local.transport).
        sent_over(request, destination.transport, written=self.config.local.transport)
        tid = self.layer.send_request(request, destination, now)
        return tid, request

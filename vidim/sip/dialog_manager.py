"""All the dialogs of one user agent: finding, creating and ending them.

:class:`DialogManager` is the transaction user's one entry point for
dialogs (RFC 3261 section 12): it builds out-of-dialog INVITEs and
SUBSCRIBEs and tracks them, so that their responses (forks too) and a
SUBSCRIBE's early NOTIFY create :class:`~vidim.sip.dialog.Dialog` objects,
and it routes the peer's in-dialog requests to their dialog, answering 481
for a To tag it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .dialog import (
    DIALOG_CREATING_METHODS,
    MANAGED_REQUEST_HEADERS,
    MAX_FORWARDS,
    Dialog,
    DialogId,
    DialogInput,
    DialogState,
    EventHeader,
    LocalVia,
    SentParties,
    checked_headers,
    event_of,
    fresh_via,
    name_addr,
    request_uri,
    tag_of,
    unknown_dialog_response,
)
from .errors import LocalProtocolError, SIPParseError
from .headers import Headers, NameAddr, Via
from .ids import new_call_id, new_tag
from .message import Request, Response, _check_method
from .uri import URI, parse_uri

__all__ = ["DialogManager"]


@dataclass(frozen=True, slots=True)
class _Pending:
    """An out-of-dialog INVITE/SUBSCRIBE of ours that may still create dialogs."""

    request: Request
    event: EventHeader | None
    sent: SentParties | None
    #: The dialogs (forks) it created so far: ending them takes no scan of the table.
    forks: list[Dialog] = field(default_factory=list)


class DialogManager:
    """All the dialogs of one UA, found by :class:`DialogId`.

    It creates dialogs from responses to the INVITEs and SUBSCRIBEs it is
    told about (:meth:`track`, or built with :meth:`create_initial_request`):
    forked responses with different To tags make different dialogs, and a
    NOTIFY that beats the 2xx to a SUBSCRIBE makes the dialog too.  The TU
    calls :meth:`forget` when the client transaction of such a request ends
    (64*T1 after the first 2xx, RFC 3261 13.2.2.4).
    """

    def __init__(self, *, local_via: LocalVia, warn_agent: str | None = None) -> None:
        self.local_via = local_via
        if warn_agent is None:
            if isinstance(local_via, Via):
                port = f":{local_via.port}" if local_via.port is not None else ""
                warn_agent = local_via.host + port
            else:
                warn_agent = "vidim"
        self.warn_agent = warn_agent
        # By Call-ID: the forks of one request share it, and dialogs_of()
        # finds them without a scan.
        self._dialogs: dict[str, list[Dialog]] = {}
        self._count = 0
        self._pending: dict[tuple[str, str], _Pending] = {}

    # -- the table ---------------------------------------------------------------
    def _find(self, call_id: str, local_tag: str, remote_tag: str) -> Dialog | None:
        for dialog in self._dialogs.get(call_id, ()):
            if dialog.local_tag == local_tag and dialog.remote_tag == remote_tag:
                return dialog
        return None

    def _insert(self, dialog: Dialog) -> None:
        """Put ``dialog`` in the table (no dialog with its id is there)."""
        self._dialogs.setdefault(dialog.call_id, []).append(dialog)
        self._count += 1

    def __iter__(self) -> Iterator[Dialog]:
        return (dialog for dialogs in list(self._dialogs.values()) for dialog in dialogs)

    def __len__(self) -> int:
        return self._count

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._find(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)

    def add(self, dialog: Dialog) -> None:
        if self._find(dialog.call_id, dialog.local_tag, dialog.remote_tag) is not None:
            raise LocalProtocolError(f"dialog {dialog.id} exists already")
        if dialog.local_via is None:
            dialog.local_via = self.local_via
        self._insert(dialog)

    def remove(self, dialog: Dialog) -> None:
        """Drop the dialog with ``dialog``'s id, if there is one."""
        found = self._find(dialog.call_id, dialog.local_tag, dialog.remote_tag)
        if found is None:
            return
        dialogs = self._dialogs[dialog.call_id]
        dialogs.remove(found)
        if not dialogs:
            del self._dialogs[dialog.call_id]
        self._count -= 1

    def prune(self) -> list[Dialog]:
        """Drop the terminated dialogs and return them."""
        gone = [dialog for dialog in self if dialog.terminated]
        for dialog in gone:
            self.remove(dialog)
        return gone

    def dialogs_of(self, request: Request) -> list[Dialog]:
        """The dialogs (forks) that an out-of-dialog request of ours created."""
        tag = tag_of(request.from_addr)
        return [d for d in self._dialogs.get(request.call_id, ()) if d.local_tag == tag]

    # -- out-of-dialog requests --------------------------------------------------
    def create_initial_request(
        self,
        method: str,
        uri: URI | str,
        *,
        from_addr: NameAddr | URI | str,
        to_addr: NameAddr | URI | str,
        contact: NameAddr | URI | str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        call_id: str | None = None,
        cseq: int = 1,
        branch: str | None = None,
    ) -> Request:
        """An out-of-dialog request: new Call-ID and From tag, fresh Via.

        INVITE and SUBSCRIBE are tracked, so that their responses (and a
        SUBSCRIBE's NOTIFYs) create dialogs.  ``branch`` is the Via's (default:
        a new one), for a caller that hands it on to
        :meth:`TransactionLayer.send_request`.
        """
        method = method.upper()
        _check_method(method)
        extra = checked_headers(headers, content_type, MANAGED_REQUEST_HEADERS)
        local = name_addr(from_addr)
        remote = name_addr(to_addr)
        if remote.tag is not None:
            raise LocalProtocolError("an out-of-dialog request has no To tag")
        local = local.with_tag(local.tag or new_tag())
        local_contact = name_addr(contact)
        if call_id is not None:
            # Checked as any header value is (no line breaks, stripped).
            call_id = Headers([("Call-ID", call_id)]).get("call-id")
        call_id = call_id or new_call_id()
        lines = [
            ("Via", str(fresh_via(self.local_via, branch))),
            ("Max-Forwards", MAX_FORWARDS),
            ("From", str(local)),
            ("To", str(remote)),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", str(local_contact)),
        ]
        target = parse_uri(uri) if isinstance(uri, str) else uri
        # The lines are written from values parsed or made here, ``extra`` is checked.
        headers = Headers.trusted([*lines, *extra])
        request = Request(method, request_uri(target), headers, body)
        if method in DIALOG_CREATING_METHODS:
            self._track(request, (call_id, tag_of(local)), SentParties(local, local_contact))
        return request

    def track(self, request: Request) -> None:
        """Let responses to this out-of-dialog INVITE/SUBSCRIBE create dialogs."""
        if request.method not in DIALOG_CREATING_METHODS:
            raise LocalProtocolError(f"{request.method} does not create dialogs")
        if request.from_addr.tag is None:
            raise LocalProtocolError("our request has no From tag")
        self._track(request, (request.call_id, tag_of(request.from_addr)), None)

    def retrack(self, request: Request) -> None:
        """Track ``request`` instead of the earlier request with its Call-ID and From tag.

        For the same request sent again with a new CSeq (credentials after a
        401/407, RFC 3261 22.2): answers to the earlier one no longer make
        dialogs, and what was tracked with it (Event, From, Contact) carries over.
        """
        key = (request.call_id, tag_of(request.from_addr))
        pending = self._pending.get(key)
        if pending is None:
            self.track(request)
            return
        self._pending[key] = _Pending(request, pending.event, pending.sent, pending.forks)

    def _track(self, request: Request, key: tuple[str, str], sent: SentParties | None) -> None:
        """Track ``request`` under ``key``: its Call-ID and From tag."""
        event = event_of(request) if request.method == "SUBSCRIBE" else None
        if request.method == "SUBSCRIBE" and event is None:
            raise LocalProtocolError("a SUBSCRIBE needs an Event header")
        self._pending[key] = _Pending(request, event, sent)

    def forget(self, request: Request) -> list[Dialog]:
        """Stop tracking ``request``; its still-early dialogs end (13.2.2.4).

        Returns the dialogs that this terminated.
        """
        pending = self._pending.pop((request.call_id, tag_of(request.from_addr)), None)
        return self._end_early_forks(pending)

    def _end_early_forks(self, pending: _Pending | None) -> list[Dialog]:
        """End the still-early dialogs a tracked request created (RFC 3261 12.3, 13.2.2.4)."""
        ended = []
        for dialog in self._forks(pending):
            if dialog.state is DialogState.EARLY:
                dialog._fire(DialogInput.RECV_FAILURE)
                ended.append(dialog)
        return ended

    # -- receiving ---------------------------------------------------------------
    def receive_response(self, request: Request, response: Response) -> Dialog | None:
        """Route a response to the dialog it belongs to, creating one if due.

        Returns that dialog (look at its ``state``), or None when the response
        concerns no dialog (a 100, a failure that created nothing).  A non-2xx
        final to a tracked request ends every early dialog it made (12.3).
        """
        call_id = request.call_id
        local_tag = tag_of(request.from_addr)
        to_tag = response.to_addr.tag
        pending = self._pending.get((call_id, local_tag))
        tracked = pending is not None and pending.request.cseq == request.cseq
        status = response.status
        dialog = None
        if to_tag is not None or status >= 200:
            dialog = self._find(call_id, local_tag, to_tag or "")
        if dialog is not None:
            dialog.receive_response(request, response)
        elif pending is not None and tracked and self._creates_dialog(request, response):
            dialog = Dialog.from_uac(request, response, local_via=self.local_via, sent=pending.sent)
            self._insert(dialog)
            pending.forks.append(dialog)
        if tracked and status >= 300:
            self._end_early_forks(pending)
        return dialog

    @staticmethod
    def _creates_dialog(request: Request, response: Response) -> bool:
        status = response.status
        if 200 <= status <= 299:
            return True
        return (
            request.method == "INVITE" and 101 <= status <= 199 and response.to_addr.tag is not None
        )

    def match_request(self, request: Request) -> Dialog | None:
        """The live dialog a peer's request belongs to, or None."""
        local_tag = request.to_addr.tag
        if local_tag is None:
            return None
        dialog = self._find(request.call_id, local_tag, tag_of(request.from_addr))
        if dialog is not None and dialog.terminated:
            return None
        return dialog

    def receive_request(self, request: Request) -> tuple[Dialog | None, Response | None]:
        """Route a peer's request to its dialog; returns (dialog, automatic response).

        (None, None): no To tag, the request is out of dialog and the TU's
        business (a new INVITE: see :meth:`accept`), or a stray ACK to drop.
        (None, 481): a To tag that matches no dialog (12.2.2).  A NOTIFY that
        matches a tracked SUBSCRIBE creates its dialog (RFC 6665 4.1.2.4).
        """
        local_tag = request.to_addr.tag
        if local_tag is None:
            return None, None
        dialog = self.match_request(request)
        if dialog is None and request.method == "BYE":
            # A BYE that crossed ours: the dialog has ended here, and still
            # the peer's BYE gets its 200, not a 481 (RFC 3261 15.1.2).
            ended = self._find(request.call_id, local_tag, tag_of(request.from_addr))
            if ended is not None:
                return ended, ended.receive_request(request)
        if dialog is None and request.method == "NOTIFY":
            dialog = self._dialog_from_notify(request)
        if dialog is None:
            if request.method == "ACK":
                return None, None
            return None, unknown_dialog_response(request, warn_agent=self.warn_agent)
        return dialog, dialog.receive_request(request)

    def _dialog_from_notify(self, notify: Request) -> Dialog | None:
        pending = self._pending.get((notify.call_id, notify.to_addr.tag or ""))
        if pending is None or pending.event is None:
            return None
        try:
            event = event_of(notify)
        except SIPParseError:
            return None
        if event is None or not pending.event.matches(event.package, event.id):
            return None
        dialog = Dialog.from_notify(
            pending.request, notify, local_via=self.local_via, sent=pending.sent
        )
        self._insert(dialog)
        pending.forks.append(dialog)
        return dialog

    def _forks(self, pending: _Pending | None) -> list[Dialog]:
        """The dialogs a tracked request created that are still in the table."""
        if pending is None:
            return []
        return [d for d in pending.forks if self._find(d.call_id, d.local_tag, d.remote_tag) is d]

    def accept(
        self,
        request: Request,
        *,
        local_contact: NameAddr | URI | str,
        local_tag: str | None = None,
    ) -> Dialog:
        """A UAS dialog for an INVITE/SUBSCRIBE we will answer (see :meth:`Dialog.from_uas`)."""
        dialog = Dialog.from_uas(request, local_tag, local_contact, local_via=self.local_via)
        self.add(dialog)
        return dialog

    # -- persistence -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The live dialogs as JSON types (tracked requests die with their transactions)."""
        return {"dialogs": [d.to_dict() for d in self if not d.terminated]}

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, local_via: LocalVia, warn_agent: str | None = None
    ) -> DialogManager:
        manager = cls(local_via=local_via, warn_agent=warn_agent)
        for item in data["dialogs"]:
            manager.add(Dialog.from_dict(item, local_via=local_via))
        return manager

"""Answering a proxy's or a focus's challenge (401/407) to a request the allocator sent.

Kamailio and Asterisk challenge senders by default.  When a request of ours
gets a 401 or 407, :class:`Authentication` sends it again with credentials,
as RFC 3261 section 22.2 says: same Call-ID, From and To, CSeq one higher, a
new branch, to the same destination.  The part that sent it never sees the
challenge: it gets the answer to the retry.

At most one retry per challenge: a second 401/407 means the credentials were
refused (unless the server says only that our nonce was ``stale``, which is
answered once more).  Then, or when there is nothing to answer with (no
credentials configured, only schemes or algorithms we do not know), the
allocator emits :class:`~.events.AuthenticationFailed` and the challenge goes to
the sender's handler as the failure it is: a probe counts the invitee as
reachable, an invitation failure tells the requester, a focus that refuses
fails the conference over or ends it with an IM.

Requests inside a dialog are answered too, except a re-INVITE (its CSeq is
tied to the dialog's offer/answer state); a focus that challenged the
initial INVITE does not usually challenge again within the dialog.
"""

from __future__ import annotations

import contextlib

from ..sip import (
    Address,
    Challenge,
    DialogId,
    Headers,
    Request,
    Response,
    SIPParseError,
    TransactionId,
    answer_challenges,
    new_branch,
    parse_challenge,
    parse_credentials,
    summary,
)
from .context import Context, Pending
from .events import AuthenticationFailed

__all__ = ["CHALLENGES", "Authentication"]

#: The statuses that challenge (RFC 3261 22.2, 22.3).
CHALLENGES = (401, 407)
#: Retries of one request: one per challenge, and one more for a stale nonce.
_MAX_RETRIES = 2


class Authentication:
    def __init__(self, context: Context) -> None:
        self._context = context

    def on_answer(
        self, tid: TransactionId, pending: Pending, response: Response, now: float
    ) -> TransactionId | None:
        """Send ``pending``'s request again with credentials for ``response``'s challenge.

        Returns the new transaction when it did (the old one is forgotten);
        None when ``response`` is the answer: then a challenge not answered,
        or a 403 to credentials we sent, is reported as
        :class:`AuthenticationFailed`.
        """
        if response.status == 403 and pending.challenged:
            sent = [
                realm
                for name in ("Authorization", "Proxy-Authorization")
                for value in pending.request.headers.get_all(name)
                if (realm := _realm_of(value)) is not None
            ]
            self._failed(pending, response, sent, "credentials refused")
            return None
        if response.status not in CHALLENGES:
            return None
        context = self._context
        request = pending.request
        challenges = _challenges(response)
        realms = list(dict.fromkeys(challenge.realm for challenge in challenges))
        credentials = context.config.credentials
        destination = pending.destination
        stale = any(challenge.stale for challenge in challenges)
        why = None
        if credentials is None:
            why = "no credentials configured ([auth] username/password)"
        elif request.method == "INVITE" and request.to_addr.tag is not None:
            why = "a challenge to a re-INVITE is not answered"
        elif pending.challenged and not (stale and pending.challenged < _MAX_RETRIES):
            why = "credentials refused"
        if why is None and credentials is not None and destination is not None:
            lines = answer_challenges(
                request,
                response,
                username=credentials.username,
                password=credentials.password,
                realm=credentials.realm,
            )
            if not lines:
                why = "no Digest challenge we can answer"
                if credentials.realm is not None and credentials.realm not in realms:
                    why = f"challenged for another realm than {credentials.realm!r}"
            else:
                retried = self._again(request, lines)
                if retried is not None:
                    return self._send(tid, pending, retried, destination, now)
                why = "no dialog to send this request in"
        self._failed(pending, response, realms, why or "cannot send this request again")
        return None

    def _failed(self, pending: Pending, response: Response, realms: list[str], why: str) -> None:
        credentials = self._context.config.credentials
        if why == "credentials refused" and credentials is not None:
            why = f"credentials of {credentials.username!r} refused"
        self._context.emit(
            AuthenticationFailed(
                conference_id=pending.conference_id,
                summary=summary(pending.request),
                status=response.status,
                realm=", ".join(realms),
                reason=why,
            )
        )

    def _again(self, request: Request, lines: list[tuple[str, str]]) -> Request | None:
        """``request`` with a new branch, the next CSeq and ``lines``, or None without a dialog."""
        answered = {name.lower() for name, _ in lines}
        realms = {_realm_of(value) for _, value in lines}
        headers = Headers()
        seq = request.cseq.seq + 1
        to_tag = request.to_addr.tag
        if to_tag is not None:
            from_tag = request.from_addr.tag or ""
            dialog = self._context.dialogs.get(DialogId(request.call_id, from_tag, to_tag))
            if dialog is None:
                return None
            seq = (dialog.local_cseq or 0) + 1
            dialog.local_cseq = seq
        for name, value in request.headers:
            key = name.lower()
            if key == "via":
                value = str(request.top_via.with_params(branch=new_branch()))
            elif key == "cseq":
                value = f"{seq} {request.method}"
            elif key in answered and _realm_of(value) in realms:
                continue  # the credentials that were refused, or a stale nonce's
            headers.add(name, value)
        for name, value in lines:
            headers.add(name, value)
        return Request(request.method, request.uri, headers, request.body)

    def _send(
        self,
        tid: TransactionId,
        old: Pending,
        request: Request,
        destination: Address,
        now: float,
    ) -> TransactionId:
        context = self._context
        context.forget(tid)
        if request.method in ("INVITE", "SUBSCRIBE") and request.to_addr.tag is None:
            context.dialogs.retrack(request)
        pending = Pending(
            old.purpose,
            old.conference_id,
            request,
            old.target,
            destination=destination,
            challenged=old.challenged + 1,
        )
        return context.send(request, destination, now, pending)


def _challenges(response: Response) -> list[Challenge]:
    """The Digest challenges of a 401 or 407 (the malformed ones left out)."""
    name = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
    challenges = []
    for value in response.headers.get_all(name):
        with contextlib.suppress(SIPParseError):
            challenge = parse_challenge(value)
            if challenge is not None:
                challenges.append(challenge)
    return challenges


def _realm_of(value: str) -> str | None:
    try:
        credentials = parse_credentials(value)
    except SIPParseError:
        return None
    return credentials.realm if credentials is not None else None

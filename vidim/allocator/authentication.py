"""Answering a proxy's or a focus's challenge (401/407) to a request the allocator sent.

Kamailio and Asterisk challenge senders by default.  When a request of ours
gets a 401 or 407, :class:`Authentication` sends it again with credentials,
as RFC 3261 section 22.2 says: same Call-ID, From and To, CSeq one higher, a
new branch, to the same destination.  The part that sent it never sees the
challenge: it gets the answer to the retry.

Each challenge is answered once: challenged again in a realm already answered
means the credentials were refused (unless the server says only that our
nonce was ``stale``, answered once more).  A new realm is answered in turn
(the proxy's 407, then the invitee's 401), and the credentials of the realms
answered before go again with their nonce count one higher.  Then, or when
there is nothing to answer with (no credentials configured, only schemes or
algorithms we do not know), the allocator emits
:class:`~.events.AuthenticationFailed` and the challenge goes to the sender's
handler as the failure it is: a probe counts the invitee as reachable, an
invitation failure tells the requester, a focus that refuses fails the
conference over or ends it with an IM.

Requests inside a dialog are answered too (with the dialog's next CSeq),
except a re-INVITE (its CSeq is tied to the dialog's offer/answer state); a
focus that challenged the initial INVITE does not usually challenge again
within the dialog.
"""

from __future__ import annotations

from ..sip import (
    Address,
    Challenge,
    DialogId,
    Headers,
    Request,
    Response,
    TransactionId,
    choose_challenges,
    new_branch,
    sign,
    summary,
)
from .context import Context, Pending
from .events import AuthenticationFailed

__all__ = ["CHALLENGES", "Authentication"]

#: The statuses that challenge (RFC 3261 22.2, 22.3).
CHALLENGES = (401, 407)
#: Retries of one request at most: the proxy's challenge, the UAS's, a stale nonce.
_MAX_RETRIES = 3
#: The headers our credentials go in: rewritten on every retry.
_CREDENTIAL_HEADERS = frozenset(("authorization", "proxy-authorization"))

#: Answered challenges: (header, challenge, nonce count), one per realm.
Answered = tuple[tuple[str, Challenge, int], ...]


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
        sent = [challenge.realm for _, challenge, _ in pending.answered]
        if response.status == 403 and sent:
            self._failed(pending, response, sent, "credentials refused")
            return None
        if response.status not in CHALLENGES:
            return None
        credentials = self._context.config.credentials
        realm = credentials.realm if credentials is not None else None
        chosen = choose_challenges(response, realm=realm)
        offered = list(dict.fromkeys(c.realm for _, c in choose_challenges(response)))
        why = self._why_not(pending, [challenge for _, challenge in chosen], offered, sent)
        if why is None:
            fresh = {challenge.realm for _, challenge in chosen}
            answered = tuple(
                (header, challenge, count + 1)
                for header, challenge, count in pending.answered
                if challenge.realm not in fresh
            ) + tuple((header, challenge, 1) for header, challenge in chosen)
            retried = self._again(pending.request, answered)
            if isinstance(retried, Request) and pending.destination is not None:
                return self._send(tid, pending, retried, answered, pending.destination, now)
            why = retried if isinstance(retried, str) else "cannot send this request again"
        self._failed(pending, response, offered, why)
        return None

    def _why_not(
        self, pending: Pending, chosen: list[Challenge], offered: list[str], sent: list[str]
    ) -> str | None:
        """Why this challenge is not answered, or None: answer it."""
        credentials = self._context.config.credentials
        request = pending.request
        if credentials is None:
            return "no credentials configured ([auth] username/password)"
        if request.method == "INVITE" and request.to_addr.tag is not None:
            return "a challenge to a re-INVITE is not answered"
        if not chosen:
            if credentials.realm is not None and credentials.realm not in offered:
                return f"challenged for another realm than {credentials.realm!r}"
            return "no Digest challenge we can answer"
        # Challenged again in a realm we answered: refused, unless the nonce was
        # only stale (the same password with a new nonce, once).
        again = any(challenge.realm in sent for challenge in chosen)
        stale = all(challenge.stale for challenge in chosen if challenge.realm in sent)
        if again and (not stale or pending.challenged >= 2):
            return "credentials refused"
        if pending.challenged >= _MAX_RETRIES:
            return "credentials refused"
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

    def _again(self, request: Request, answered: Answered) -> Request | str:
        """``request`` signed for ``answered``, with a new branch and the next CSeq; or why not."""
        credentials = self._context.config.credentials
        if credentials is None:
            return "no credentials configured ([auth] username/password)"
        seq = request.cseq.seq + 1
        to_tag = request.to_addr.tag
        if to_tag is not None:
            from_tag = request.from_addr.tag or ""
            dialog = self._context.dialogs.get(DialogId(request.call_id, from_tag, to_tag))
            if dialog is None:
                return "no dialog to send this request in"
            seq = (dialog.local_cseq or 0) + 1
            dialog.local_cseq = seq
        headers = Headers()
        for name, value in request.headers:
            key = name.lower()
            if key == "via":
                value = str(request.top_via.with_params(branch=new_branch()))
            elif key == "cseq":
                value = f"{seq} {request.method}"
            elif key in _CREDENTIAL_HEADERS:
                continue  # signed again below
            headers.add(name, value)
        for header, challenge, count in answered:
            signed = sign(
                request,
                challenge,
                username=credentials.username,
                password=credentials.password,
                nc=count,
            )
            headers.add(header, str(signed))
        return Request(request.method, request.uri, headers, request.body)

    def _send(
        self,
        tid: TransactionId,
        old: Pending,
        request: Request,
        answered: Answered,
        destination: Address,
        now: float,
    ) -> TransactionId | None:
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
            answered=answered,
        )
        return context.send(request, destination, now, pending)

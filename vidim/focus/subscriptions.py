"""The conference event package (RFC 4575 over RFC 6665): who watches a conference's roster.

A SUBSCRIBE to a conference URI gets 200 and a NOTIFY with the full
conference-info, then a partial one per join or leave, and a final
``terminated;reason=noresource`` when the conference ends.  A NOTIFY
refused (other than 401/407/491) or unanswered ends the subscription.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..conference_info import CONFERENCE_INFO_TYPE, ConferenceInfo, UserInfo, build_conference_info
from ..sip import Address, Dialog, Request, Response, TransactionId, make_response, new_tag
from ..sip.dialog import parse_event
from .events import SubscriptionEnded, SubscriptionStarted
from .records import Conference, Leg, Owner, Subscription, TimerKey, TimerKind
from .signalling import Signalling

__all__ = ["Subscriptions"]


class Subscriptions:
    """Subscriptions to every conference of one focus, and the NOTIFYs they get."""

    def __init__(self, signalling: Signalling) -> None:
        self._signalling = signalling
        #: NOTIFYs awaiting their answer: the conference, the subscription, the request.
        self._notifies: dict[TransactionId, tuple[Conference, Subscription, Request]] = {}

    def subscribe(
        self,
        conference: Conference,
        request: Request,
        source: Address,
        now: float,
    ) -> None:
        """A SUBSCRIBE to ``conference``: from a trusted network, or with a join credential."""
        signalling = self._signalling
        value = request.headers.get("event")
        event = parse_event(value) if value is not None else None  # SIPParseError -> 400
        if event is None or event.package.lower() != "conference":
            signalling.refuse(
                request,
                489,
                "only the conference event package is served",
                now,
                [("Allow-Events", "conference")],
            )
            return
        if not signalling.trusted(source) and conference.identify(request, trusted=False) is None:
            signalling.refuse(request, 403, "not allowed to watch this conference", now)
            return
        expires = self._granted(request)
        dialog = signalling.dialogs.accept(request, local_contact=f"<{conference.uri}>")
        granted = [("Expires", str(expires))]
        signalling.respond(dialog.create_response(request, 200, headers=granted), now)
        sub = Subscription(
            dialog=dialog,
            source=source,
            subscriber=str(request.from_addr.uri),
            event=event.package + (f";id={event.id}" if event.id is not None else ""),
            expires_at=now + expires,
        )
        if expires == 0:  # a fetch: state once, then done (RFC 6665 4.4.3)
            self.notify(conference, sub, now, full=True, terminated="timeout")
            signalling.dialogs.remove(dialog)
            return
        conference.subscriptions.append(sub)
        signalling.owners[dialog.id] = Owner(conference.user, Leg.SUBSCRIPTION, sub.subscriber)
        signalling.timers.arm(TimerKey(TimerKind.SUBSCRIPTION_EXPIRY, dialog.id), sub.expires_at)
        signalling.emit(
            SubscriptionStarted(
                conference_uri=conference.uri, subscriber=sub.subscriber, expires=expires
            )
        )
        self.notify(conference, sub, now, full=True)

    def refresh(self, conference: Conference, dialog: Dialog, request: Request, now: float) -> None:
        """A SUBSCRIBE in a subscription's dialog: a refresh, or (Expires: 0) its end."""
        sub = self.find(conference, dialog)
        signalling = self._signalling
        if sub is None:
            signalling.respond(dialog.create_response(request, 481), now)
            return
        expires = self._granted(request)
        granted = [("Expires", str(expires))]
        signalling.respond(dialog.create_response(request, 200, headers=granted), now)
        if expires == 0:
            self.notify(conference, sub, now, full=True, terminated="timeout")
            self.drop(conference, sub, "unsubscribed")
            return
        sub.expires_at = now + expires
        signalling.timers.arm(TimerKey(TimerKind.SUBSCRIPTION_EXPIRY, dialog.id), sub.expires_at)
        self.notify(conference, sub, now, full=True)

    def expire(self, conference: Conference, sub: Subscription, now: float) -> None:
        self.notify(conference, sub, now, full=True, terminated="timeout")
        self.drop(conference, sub, "expired")

    def end(self, conference: Conference, gone: Iterable[UserInfo], now: float) -> None:
        """The conference ended: a terminated NOTIFY to every subscriber, naming who left."""
        users = tuple(gone)
        for sub in list(conference.subscriptions):
            self.notify(conference, sub, now, users=users, terminated="noresource", active=False)
            self.drop(conference, sub, "conference ended")

    @staticmethod
    def find(conference: Conference, dialog: Dialog) -> Subscription | None:
        return next((s for s in conference.subscriptions if s.dialog is dialog), None)

    def _granted(self, request: Request) -> int:
        value = (request.headers.get("expires") or "").strip()
        limit = self._signalling.config.max_subscription_expires
        if not value.isascii() or not value.isdigit():
            return limit
        return min(int(value), limit)

    # -- NOTIFY ----------------------------------------------------------------------
    def notify(
        self,
        conference: Conference,
        sub: Subscription,
        now: float,
        *,
        full: bool = False,
        users: Iterable[UserInfo] = (),
        terminated: str | None = None,
        active: bool = True,
    ) -> None:
        sub.version += 1
        connected = sum(1 for u in conference.roster.values() if u.status == "connected")
        info = ConferenceInfo(
            entity=conference.uri,
            version=sub.version,
            state="full" if full else "partial",
            users=tuple(conference.roster.values()) if full else tuple(users),
            active=active,
            user_count=connected if active else 0,
        )
        if terminated is not None:
            state = f"terminated;reason={terminated}"
        else:
            state = f"active;expires={max(0, int(sub.expires_at - now))}"
        sent = self._signalling.send_in_dialog(
            sub.dialog,
            sub.source,
            "NOTIFY",
            now,
            headers=[("Event", sub.event), ("Subscription-State", state)],
            body=build_conference_info(info),
            content_type=CONFERENCE_INFO_TYPE,
        )
        if sent is not None:
            self._notifies[sent[0]] = (conference, sub, sent[1])

    def notify_all(self, conference: Conference, users: list[UserInfo], now: float) -> None:
        for sub in list(conference.subscriptions):
            self.notify(conference, sub, now, users=users)

    def conference_of(self, tid: TransactionId) -> Conference | None:
        """The conference a NOTIFY awaiting its answer was sent for, if ``tid`` is one."""
        pending = self._notifies.get(tid)
        return pending[0] if pending is not None else None

    def on_answer(self, tid: TransactionId, response: Response) -> None:
        """A NOTIFY's answer: a refusal ends the subscription."""
        pending = self._notifies.get(tid)
        if pending is None or response.status < 300:
            return
        if response.status in (401, 407, 491):
            return  # not a refusal of the subscription
        conference, sub, _ = pending
        if sub in conference.subscriptions:
            self.drop(conference, sub, f"NOTIFY answered {response.status}")

    def on_failure(self, tid: TransactionId, status_hint: int) -> None:
        """A NOTIFY timed out or could not be sent: as if answered ``status_hint``."""
        pending = self._notifies.get(tid)
        if pending is not None:
            self.on_answer(tid, make_response(pending[2], status_hint, to_tag=new_tag()))

    def on_terminated(self, tid: TransactionId) -> None:
        self._notifies.pop(tid, None)

    def drop(self, conference: Conference, sub: Subscription, reason: str) -> None:
        signalling = self._signalling
        if sub in conference.subscriptions:
            conference.subscriptions.remove(sub)
            signalling.emit(
                SubscriptionEnded(
                    conference_uri=conference.uri, subscriber=sub.subscriber, reason=reason
                )
            )
        signalling.timers.cancel(TimerKey(TimerKind.SUBSCRIPTION_EXPIRY, sub.dialog.id))
        signalling.owners.pop(sub.dialog.id, None)
        signalling.dialogs.remove(sub.dialog)

"""Requests and answers: what people ask of vidim, and what it answers.

A MESSAGE is parsed into a command (:mod:`vidim.allocator.requests`); a
command vidim can do is accepted with 202 and done (a new conference,
``/add``, ``/end``, ``/status``, ``/help``), anything else is refused with a
4xx or 5xx whose Warning says why, and the requester, when known and
reached through a trusted source, is told the same in an IM.  The few other
requests outside a dialog get their plain answers (OPTIONS 200, 405).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip import (
    DEFAULT_POLICY,
    Address,
    Challenger,
    RemoteProtocolError,
    Request,
    ServerPolicy,
    SipURI,
    check_request,
    check_sizes,
    make_response,
    new_tag,
    warning_value,
)
from ..vocabulary import Mode, is_trusted
from .conference import Conference, ConferenceInput, ConferenceState, Participant
from .config import AllocatorConfig
from .context import Context, address_text, new_token
from .events import RequestAccepted, RequestRefused
from .focus_leg import FocusLeg
from .notices import status_text
from .probing import Probing
from .requests import (
    AddInvitees,
    Command,
    EndConference,
    Invitee,
    NewConference,
    RequestRefusedError,
    ShowHelp,
    ShowStatus,
    help_text,
    parse_request,
)

__all__ = ["ALLOW", "Commands", "FollowUp", "NewConferenceAsked", "RateLimiter"]

#: The methods vidim answers outside a dialog.
ALLOW = "MESSAGE, OPTIONS, NOTIFY, BYE, ACK, CANCEL"


class RateLimiter:
    """At most ``limit`` new conferences per requester in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        #: Per requester: when their recent requests came, oldest first.
        self._seen: dict[str, list[float]] = {}
        self._next_sweep = 0.0
        #: Verdicts reached elsewhere (:meth:`decide`), for each requester's next request.
        self._verdicts: dict[str, bool] = {}

    def __len__(self) -> int:
        """How many requesters are remembered."""
        return len(self._seen)

    def decide(self, requester: str, allowed: bool) -> None:
        """The verdict for ``requester``'s next request, reached elsewhere.

        Daemons sharing a store count in the store (``StateStore.count_event``),
        so that a requester's requests count whichever daemon they reach.
        """
        self._verdicts[requester] = allowed

    def allow(self, requester: str, now: float) -> bool:
        """Count one request; False (and not counted) when it is over the limit."""
        verdict = self._verdicts.pop(requester, None)
        if verdict is not None:
            return verdict
        self.sweep_if_due(now)
        horizon = now - self.window
        seen = [when for when in self._seen.get(requester, []) if when > horizon]
        self._seen[requester] = seen
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True

    def sweep_if_due(self, now: float) -> None:
        """Once per window, forget the requesters with nothing left in it."""
        if now < self._next_sweep:
            return
        horizon = now - self.window
        self._seen = {r: times for r, times in self._seen.items() if times and times[-1] > horizon}
        self._next_sweep = now + self.window


@dataclass(frozen=True, kw_only=True, slots=True)
class NewConferenceAsked:
    """A request for a new conference (see :meth:`Commands.classify`): its rate is shared."""

    requester: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FollowUp:
    """A command about a conference not driven here (see :meth:`Commands.elsewhere`)."""

    requester: str
    #: The ``#id`` it named; None: the requester's newest conference.
    conference_id: str | None


def _message_checks(body_type: str | None) -> ServerPolicy:
    """The SIP core's checks for a MESSAGE that vidim has already parsed and accepted."""
    if body_type is None or body_type in DEFAULT_POLICY.accepted_content_types:
        return DEFAULT_POLICY
    return ServerPolicy(accepted_content_types=DEFAULT_POLICY.accepted_content_types | {body_type})


def _participant(invitee: Invitee, default: Mode) -> Participant:
    mode = invitee.effective_mode(default)
    return Participant(uri=str(invitee.uri), requested_mode=mode, mode=mode, credential=new_token())


class Commands:
    def __init__(self, context: Context, probing: Probing, focus: FocusLeg) -> None:
        self._context = context
        self._probing = probing
        self._focus = focus
        config = context.config
        self.rate = RateLimiter(config.rate_limit, config.rate_window)
        #: Why new conferences are refused with 503 now (None: they are not),
        #: e.g. while the state store cannot keep them.
        self.refusing_new: str | None = None
        #: Asks untrusted requesters who they are (digest), when configured.
        self.challenger = self._challenger(config)

    # -- requests outside a dialog --------------------------------------------------
    def on_request(self, request: Request, source: Address, now: float) -> None:
        """A request with no To tag: a MESSAGE to vidim, a probe of vidim, or a stray."""
        if request.method == "MESSAGE":
            self._on_message(request, source, now)
        elif request.method == "OPTIONS":
            headers = [("Allow", ALLOW), ("Accept", "text/plain, multipart/mixed")]
            response = make_response(request, 200, to_tag=new_tag(), headers=headers)
            self._context.respond(response, now)
        elif request.method == "NOTIFY":
            # A NOTIFY that beats the 2xx to our SUBSCRIBE has a To tag; one
            # without is for nothing of ours.
            self.refuse_plain(request, 481, "no subscription matches this NOTIFY", now)
        else:
            self.refuse_plain(request, 405, "vidim takes no calls", now, [("Allow", ALLOW)])

    def refuse_plain(
        self,
        request: Request,
        status: int,
        reason: str,
        now: float,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Answer ``status`` with a Warning saying why, and nothing more."""
        warning = ("Warning", warning_value(self._context.config.warning_host, reason))
        response = make_response(
            request, status, to_tag=new_tag(), headers=[*(headers or []), warning]
        )
        self._context.respond(response, now)

    def _on_message(self, request: Request, source: Address, now: float) -> None:
        config = self._context.config
        try:
            # Sizes before anything is read (issue 18): nothing oversized is copied into
            # the requests vidim sends.  Then who it is from, when vidim asks; then
            # vidim's own checks: their refusals say why and reach the requester.
            check_sizes(request)
            authenticated = self._authenticate(request, source, now)
            # parse_request judged the body (a header-form note may be of any type).
            command = parse_request(
                request,
                source_host=source.host,
                policy=config.requests,
                authenticated=authenticated,
            )
            body_type = request.content_type
            check_request(request, _message_checks(body_type.mime if body_type else None))
        except RequestRefusedError as refused:
            self._refuse(request, source, refused, refused.requester, now)
            return
        except RemoteProtocolError as rejected:  # the SIP core's checks, the challenger's
            self._refuse(request, source, rejected, None, now)
            return
        self._on_command(command, request, source, now)

    def _authenticate(self, request: Request, source: Address, now: float) -> bool:
        """Whether a request from an untrusted source proved it is from its From user.

        Only when vidim challenges (``AllocatorConfig.challenge``); raises the
        401 (a fresh challenge) or 403 (wrong, replayed, or another user's
        credentials) to answer with.
        """
        trusted = self._context.config.requests.trusted_networks
        if self.challenger is None or is_trusted(source.host, trusted):
            return False
        user = self.challenger.check(request, now)
        sender = request.from_addr.uri
        if not isinstance(sender, SipURI) or sender.user != user:
            raise RemoteProtocolError(
                f"authenticated as {user!r}, who is not the From user", status_hint=403
            )
        return True

    def reconfigure(self, config: AllocatorConfig) -> None:
        """Limits and the users challenged, from a new configuration."""
        self.rate.limit = config.rate_limit
        self.rate.window = config.rate_window
        if config.challenge != self._context.config.challenge:
            self.challenger = self._challenger(config)

    @staticmethod
    def _challenger(config: AllocatorConfig) -> Challenger | None:
        if config.challenge is None:
            return None
        return Challenger.for_realm(config.challenge, warning_host=config.warning_host)

    def _refuse(
        self,
        request: Request,
        source: Address,
        error: RemoteProtocolError,
        requester: SipURI | str | None,
        now: float,
    ) -> None:
        context = self._context
        headers = [("Warning", warning_value(context.config.warning_host, error.reason))]
        headers.extend(error.headers)
        context.respond(
            make_response(request, error.status_hint, to_tag=new_tag(), headers=headers), now
        )
        who = str(requester) if requester is not None else None
        context.emit(
            RequestRefused(
                call_id=request.call_id,
                requester=who,
                status=error.status_hint,
                reason=error.reason,
            )
        )
        # Tell a person in words, but never answer a source we do not trust
        # with a new request (it could make vidim a reflector).
        if who is not None and is_trusted(source.host, context.config.requests.trusted_networks):
            context.notice(who, f"vidim could not do that: {error.reason}.", now, direct=source)

    def _accept(
        self, request: Request, requester: str, command: str, conference_id: str | None, now: float
    ) -> None:
        self._context.respond(make_response(request, 202, to_tag=new_tag()), now)
        self._context.emit(
            RequestAccepted(
                call_id=request.call_id,
                requester=requester,
                command=command,
                conference_id=conference_id,
            )
        )

    def classify(self, request: Request, source: Address) -> NewConferenceAsked | FollowUp | None:
        """What daemons sharing a store must settle before this allocator takes ``request``.

        A new conference: its requester's rate, counted in the store.  A
        follow-up command about a conference this allocator does not drive:
        the daemon that drives it (or adopting it here).  None for anything
        else, including requests :meth:`on_request` refuses.
        """
        if request.method != "MESSAGE" or request.to_addr.tag is not None:
            return None
        try:
            command = parse_request(
                request, source_host=source.host, policy=self._context.config.requests
            )
        except RemoteProtocolError:
            return None
        if isinstance(command, NewConference):
            return NewConferenceAsked(requester=str(command.requester))
        if not isinstance(command, (AddInvitees, EndConference, ShowStatus)):
            return None
        conferences = self._context.conferences
        requester = str(command.requester)
        if command.conference_id is not None:
            if command.conference_id in conferences:
                return None
        elif conferences.newest_of(requester) is not None:
            return None
        return FollowUp(requester=requester, conference_id=command.conference_id)

    # -- commands -----------------------------------------------------------------------
    def _on_command(self, command: Command, request: Request, source: Address, now: float) -> None:
        requester = str(command.requester)
        if isinstance(command, NewConference):
            self._new_conference(command, request, source, now)
            return
        if isinstance(command, ShowHelp):
            self._accept(request, requester, "help", None, now)
            help_im = help_text(self._context.config.requests)
            self._context.notice(requester, help_im, now, direct=source)
            return
        conferences = self._context.conferences
        if command.conference_id is not None:
            conference = conferences.get(command.conference_id)
        else:
            conference = conferences.newest_of(requester)
        if conference is None:
            which = f"#{command.conference_id}" if command.conference_id else "of yours"
            error = RequestRefusedError(f"no live conference {which}", status_hint=404)
            self._refuse(request, source, error, requester, now)
        elif isinstance(command, EndConference):
            self._end(conference, request, source, requester, now)
        elif isinstance(command, ShowStatus):
            self._accept(request, requester, "status", conference.id, now)
            self._context.notice(requester, status_text(conference), now, direct=source)
        else:
            self._add(conference, command, request, source, now)

    def _new_conference(
        self, command: NewConference, request: Request, source: Address, now: float
    ) -> None:
        config = self._context.config
        requester = str(command.requester)
        if self.refusing_new is not None:
            error = RequestRefusedError(
                f"{self.refusing_new}; try again later",
                status_hint=503,
                headers=(("Retry-After", "5"),),
            )
            self._refuse(request, source, error, requester, now)
            return
        if len(self._context.conferences) >= config.max_conferences:
            error = RequestRefusedError(
                "too many live conferences; try again later",
                status_hint=503,
                headers=(("Retry-After", "30"),),
            )
            self._refuse(request, source, error, requester, now)
            return
        if not self.rate.allow(requester, now):
            limit = f"{config.rate_limit} per {config.rate_window:g} s"
            error = RequestRefusedError(
                f"too many new conferences (at most {limit})", status_hint=403
            )
            self._refuse(request, source, error, requester, now)
            return
        me = Participant(
            uri=requester,
            requested_mode=command.mode,
            mode=command.mode,
            credential=new_token(),
            requester=True,
        )
        conference = Conference(
            id=new_token(),
            requester=requester,
            mode=command.mode,
            requester_address=address_text(source),
            participants=[me, *(_participant(i, command.mode) for i in command.invitees)],
            created_at=now,
        )
        self._context.conferences.add(conference)
        self._accept(request, requester, "new", conference.id, now)
        self._probing.start(conference, now)

    def _end(
        self, conference: Conference, request: Request, source: Address, requester: str, now: float
    ) -> None:
        if conference.requester != requester:
            error = RequestRefusedError(
                f"only {conference.requester} may end this conference", status_hint=403
            )
            self._refuse(request, source, error, requester, now)
            return
        self._accept(request, requester, "end", conference.id, now)
        self._focus.end(conference, f"ended by {requester}", now)

    def _add(
        self,
        conference: Conference,
        command: AddInvitees,
        request: Request,
        source: Address,
        now: float,
    ) -> None:
        requester = str(command.requester)
        if conference.state is not ConferenceState.ACTIVE:
            error = RequestRefusedError(
                f"conference #{conference.id} is {conference.state.value}; try again in a moment",
                status_hint=491,
            )
            self._refuse(request, source, error, requester, now)
            return
        known = {p.uri for p in conference.participants}
        new = [i for i in command.invitees if str(i.uri) not in known]
        limit = self._context.config.requests.max_invitees
        count = len(conference.participants) - 1 + len(new)
        if count > limit:
            error = RequestRefusedError(
                f"too many invitees: {count}, at most {limit}", status_hint=400
            )
            self._refuse(request, source, error, requester, now)
            return
        self._accept(request, requester, "add", conference.id, now)
        if not new:
            return
        conference.participants += [_participant(i, conference.mode) for i in new]
        self._context.move(conference, ConferenceInput.ADD_INVITEES)
        self._probing.probe(conference, now)

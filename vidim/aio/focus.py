"""The built-in focus's media, on asyncio: keep an :class:`RtpRelay` on the focus's plan.

The focus (:class:`vidim.focus.ConferenceFocus`) is sans-IO: it reports
:class:`~vidim.focus.MediaPlanChanged` and holds the plan of every live
conference together in :attr:`~vidim.focus.ConferenceFocus.forwarding_plan`.
:class:`FocusMedia` is what an application embedding the focus needs
besides a :class:`SipServer`::

    focus = ConferenceFocus(config)
    for record in records:            # a restart: the focus's stored conferences
        focus.restore(record, time.time())
    media = FocusMedia(focus, RtpRelay(config.media_address))
    server = SipServer(focus, host=..., port=..., clock=time.time, on_event=media.on_event)
    media.attach(server)
    await server.start()              # dispatches the restored plans: the relay binds them
    ...
    await media.close()

Audio is mixed and video switched: :class:`FocusMedia` keeps a
:class:`~vidim.focus.mixers.MixerBank` and a
:class:`~vidim.focus.switches.SwitchBank` in step with the plan's mixes and
switches, hands them what the relay receives on terminated ports
(:attr:`RtpRelay.on_terminated`), runs their timers (the mixers' 20 ms tick,
the switches' hysteresis, retries and reports) on the loop's timer
(``loop.call_at``, the loop's clock) and sends what they return through the
relay (:meth:`RtpRelay.send`).  Each mixer's audio levels go to the same
conference's switch: who speaks is who is shown.  A switch's wish for a
keyframe by SIP INFO (:class:`~vidim.focus.video.PictureFastUpdateWanted`)
goes to the focus (:meth:`~vidim.focus.ConferenceFocus.request_keyframe`)
and out through the attached server; a phone's own INFO asking for one
(:class:`~vidim.focus.events.KeyframeWanted`) goes to its switch, as its RTCP
PLI would.  Every mixer and switch event goes to
``on_media_event``.

Plans are applied one at a time, and the one applied last is always the
focus's plan at the time: a burst of changes while the relay is binding
sockets ends in one more :meth:`RtpRelay.apply` of the latest plan, never
in an older plan left in force.

A port the relay cannot bind (another program took it, e.g. while a
restarted focus was down) is logged at ERROR with the call it belongs to;
once :meth:`FocusMedia.attach` has given it the server, the focus is told
(:meth:`~vidim.focus.ConferenceFocus.ports_unavailable`): that call is ended
with BYE, and the plan without it is applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..focus.events import FocusEvent, KeyframeWanted, MediaPlanChanged
from ..focus.media import ForwardingPlan
from ..focus.mixer import AudioLevelMeasured, PacketRefused
from ..focus.mixers import ConferenceMixerEvent, MixerBank
from ..focus.switches import ConferenceVideoEvent, SwitchBank
from ..focus.video import PictureFastUpdateWanted
from .rtp import PortsUnavailableError, RtpRelay
from .server import SipServer

__all__ = ["FocusMedia", "MediaEvent", "PlanSource"]

#: What ``on_media_event`` is given: a mixer's or a video switch's event, with its conference.
MediaEvent = ConferenceMixerEvent | ConferenceVideoEvent


class PlanSource(Protocol):
    """What :class:`FocusMedia` uses: a :class:`~vidim.focus.ConferenceFocus`, in practice."""

    @property
    def forwarding_plan(self) -> ForwardingPlan: ...

    def ports_unavailable(self, errors: Mapping[int, str], now: float) -> None: ...

    def request_keyframe(self, conference_uri: str, participant: str, now: float) -> None: ...


class FocusMedia:
    """Applies a focus's forwarding plan to an RTP relay whenever it changes.

    Args:
        focus: where the plan comes from.
        relay: the relay it drives (owned: :meth:`close` closes it).
        logger: where a plan that cannot be bound is reported (the previous
            plan stays in force); ``logging.getLogger("vidim.aio")`` by default.
        mixers: the conferences' audio mixers (a default :class:`MixerBank`).
        switches: the conferences' video switches (a default :class:`SwitchBank`).
        on_media_event: called with each mixer and switch event (sync), e.g.
            audio levels, talker changes.
    """

    def __init__(
        self,
        focus: PlanSource,
        relay: RtpRelay,
        *,
        logger: logging.Logger | None = None,
        mixers: MixerBank | None = None,
        switches: SwitchBank | None = None,
        on_media_event: Callable[[MediaEvent], None] | None = None,
    ) -> None:
        self.focus = focus
        self.relay = relay
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        self.mixers = mixers if mixers is not None else MixerBank()
        self.switches = switches if switches is not None else SwitchBank()
        self.on_media_event = on_media_event
        self._server: SipServer[Any] | None = None
        self._stale = False
        self._applying: asyncio.Task[None] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._clock_set = False
        relay.on_terminated = self._terminated_received

    def attach(self, server: SipServer[Any]) -> None:
        """The server that runs the focus: through it, a port that cannot be bound ends its call.

        The focus is told at ``server.now()`` and ``server.transmit()`` sends
        the BYEs.  Without it, such a plan is only logged (the old one stays).
        """
        self._server = server

    def on_event(self, event: FocusEvent) -> None:
        """Give it every focus event (e.g. as :class:`SipServer`'s ``on_event``); sync."""
        if isinstance(event, MediaPlanChanged):
            self.plan_changed()
        elif isinstance(event, KeyframeWanted):  # a phone's SIP INFO, as for its RTCP PLI
            now = self._now()
            self.switches.keyframe_wanted(event.conference_uri, event.uri, now)
            self._flush(now)

    def plan_changed(self) -> None:
        """The focus's plan changed: apply it (after the apply under way, if any)."""
        self._stale = True
        if self._applying is None:
            self._applying = asyncio.get_running_loop().create_task(self._apply_latest())

    async def _apply_latest(self) -> None:
        try:
            while self._stale:
                self._stale = False
                plan = self.focus.forwarding_plan
                # The cores first: a member gone from the plan says RTCP BYE from its
                # port, which the relay closes next; a new member's port opens next.
                self._apply_cores(plan)
                try:
                    await self.relay.apply(plan)
                except PortsUnavailableError as error:
                    self._unavailable(plan, error)
                except OSError as error:
                    self.logger.error("RTP relay: cannot bind the plan's ports: %s", error)
        finally:
            self._applying = None

    # -- the mixers and switches -----------------------------------------------------------

    def _now(self) -> float:
        loop = asyncio.get_running_loop()
        if not self._clock_set:  # sender reports need the wall clock of the loop's time
            self.mixers.ntp_offset = self.switches.ntp_offset = time.time() - loop.time()
            self._clock_set = True
        return loop.time()

    def _apply_cores(self, plan: ForwardingPlan) -> None:
        now = self._now()
        self.mixers.apply(plan.mixes, now)
        self.switches.apply(plan.switches, now)
        self._flush(now)
        self._schedule()

    def _terminated_received(self, port: int, data: bytes) -> None:
        now = self._now()
        if port in self.switches:
            self.switches.receive_datagram(port, data, now)
            self._flush(now)
            # Video may bring its conference's deadline nearer (a request's retry, a report).
            due = self.switches.get_timer_of(port)
            if due is not None and (self._tick is None or due < self._tick.when()):
                self._schedule()
        else:
            self.mixers.receive_datagram(port, data, now)  # never moves the mixers' tick
            self._flush(now)

    def _on_tick(self, due: float) -> None:
        self._tick = None
        # call_at may run a hair before its time: never hand the cores a time before it.
        now = max(self._now(), due)
        self.mixers.handle_timer(now)
        self.switches.handle_timer(now)
        self._flush(now)
        self._schedule()

    def _flush(self, now: float) -> None:
        """Send what the mixers and switches produced, pass on their events."""
        for port, data in self.mixers.datagrams_to_send():
            self.relay.send(port, data)
        for item in self.mixers.events():
            if isinstance(item.event, AudioLevelMeasured):
                event = item.event
                self.switches.audio_level(item.conference, event.participant, event.level, now)
            self._pass_on(item)
        for port, data in self.switches.datagrams_to_send():
            self.relay.send(port, data)
        for video in self.switches.events():
            if isinstance(video.event, PictureFastUpdateWanted):
                self._picture_fast_update(video.conference, video.event.participant)
            self._pass_on(video)

    def _pass_on(self, item: MediaEvent) -> None:
        if isinstance(item.event, PacketRefused):
            self.logger.debug(
                "media: dropped a packet of %s in %s: %s",
                item.event.participant,
                item.conference,
                item.event.reason,
            )
        if self.on_media_event is not None:
            self.on_media_event(item)

    def _picture_fast_update(self, conference: str, participant: str) -> None:
        """A keyframe asked of a phone by SIP INFO: sent through the server, if attached."""
        server = self._server
        if server is None:
            self.logger.debug("video: no server attached to ask %s for a keyframe", participant)
            return
        self.focus.request_keyframe(conference, participant, server.now())
        server.transmit()

    def _schedule(self) -> None:
        """The loop's timer at the earliest deadline of the mixers (the tick) and switches."""
        timers = (self.mixers.get_timer(), self.switches.get_timer())
        deadlines = [t for t in timers if t is not None]
        due = min(deadlines, default=None)
        if self._tick is not None and (due is None or self._tick.when() != due):
            self._tick.cancel()
            self._tick = None
        if due is not None and self._tick is None:
            self._tick = asyncio.get_running_loop().call_at(due, self._on_tick, due)

    def _unavailable(self, plan: ForwardingPlan, error: PortsUnavailableError) -> None:
        """Log each port that cannot be bound; have the focus end the calls that use them."""
        routes = plan.as_dict()
        server = self._server
        then = "its call is ended" if server is not None else "the previous plan stays"
        reasons = {port: str(cause.strerror or cause) for port, cause in error.errors.items()}
        for port, reason in reasons.items():
            route = routes.get(port)
            self.logger.error(
                "RTP relay: cannot bind port %d of %s: %s; %s",
                port,
                f"{route.participant} ({route.kind})" if route is not None else "the plan",
                reason,
                then,
                extra={"rtp_port": port, "participant": route.participant if route else None},
            )
        if server is not None:
            self.focus.ports_unavailable(reasons, server.now())
            server.transmit()  # the BYEs; the plan change it reports sets _stale again

    async def settled(self) -> None:
        """Return once the relay runs the focus's latest plan (or failed to bind it)."""
        while (applying := self._applying) is not None:
            await asyncio.shield(applying)

    async def close(self) -> None:
        """Wait for the apply under way, stop the mixers' tick, then close the relay's sockets."""
        await self.settled()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        await self.relay.close()

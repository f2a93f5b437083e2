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
from collections.abc import Mapping
from typing import Any, Protocol

from ..focus.events import FocusEvent, MediaPlanChanged
from ..focus.media import ForwardingPlan
from .rtp import PortsUnavailableError, RtpRelay
from .server import SipServer

__all__ = ["FocusMedia", "PlanSource"]


class PlanSource(Protocol):
    """What :class:`FocusMedia` uses: a :class:`~vidim.focus.ConferenceFocus`, in practice."""

    @property
    def forwarding_plan(self) -> ForwardingPlan: ...

    def ports_unavailable(self, errors: Mapping[int, str], now: float) -> None: ...


class FocusMedia:
    """Applies a focus's forwarding plan to an RTP relay whenever it changes.

    Args:
        focus: where the plan comes from.
        relay: the relay it drives (owned: :meth:`close` closes it).
        logger: where a plan that cannot be bound is reported (the previous
            plan stays in force); ``logging.getLogger("vidim.aio")`` by default.
    """

    def __init__(
        self, focus: PlanSource, relay: RtpRelay, *, logger: logging.Logger | None = None
    ) -> None:
        self.focus = focus
        self.relay = relay
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        self._server: SipServer[Any] | None = None
        self._stale = False
        self._applying: asyncio.Task[None] | None = None

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
                try:
                    await self.relay.apply(plan)
                except PortsUnavailableError as error:
                    self._unavailable(plan, error)
                except OSError as error:
                    self.logger.error("RTP relay: cannot bind the plan's ports: %s", error)
        finally:
            self._applying = None

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
        """Wait for the apply under way, then close the relay's sockets."""
        await self.settled()
        await self.relay.close()

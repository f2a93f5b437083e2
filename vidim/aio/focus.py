"""The built-in focus's media, on asyncio: keep an :class:`RtpRelay` on the focus's plan.

The focus (:class:`vidim.focus.ConferenceFocus`) is sans-IO: it reports
:class:`~vidim.focus.MediaPlanChanged` and holds the plan of every live
conference together in :attr:`~vidim.focus.ConferenceFocus.forwarding_plan`.
:class:`FocusMedia` is what an application embedding the focus needs
besides a :class:`SipServer`::

    focus = ConferenceFocus(config)
    media = FocusMedia(focus, RtpRelay(config.media_address))
    server = SipServer(focus, host=..., port=..., on_event=media.on_event)
    await server.start()
    ...
    await media.close()

Plans are applied one at a time, and the one applied last is always the
focus's plan at the time: a burst of changes while the relay is binding
sockets ends in one more :meth:`RtpRelay.apply` of the latest plan, never
in an older plan left in force.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..focus.events import FocusEvent, MediaPlanChanged
from ..focus.media import ForwardingPlan
from .rtp import RtpRelay

__all__ = ["FocusMedia", "PlanSource"]


class PlanSource(Protocol):
    """What :class:`FocusMedia` reads: a :class:`~vidim.focus.ConferenceFocus`, in practice."""

    @property
    def forwarding_plan(self) -> ForwardingPlan: ...


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
        self._stale = False
        self._applying: asyncio.Task[None] | None = None

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
                try:
                    await self.relay.apply(self.focus.forwarding_plan)
                except OSError as error:
                    self.logger.error("RTP relay: cannot bind the plan's ports: %s", error)
        finally:
            self._applying = None

    async def settled(self) -> None:
        """Return once the relay runs the focus's latest plan (or failed to bind it)."""
        while (applying := self._applying) is not None:
            await asyncio.shield(applying)

    async def close(self) -> None:
        """Wait for the apply under way, then close the relay's sockets."""
        await self.settled()
        await self.relay.close()

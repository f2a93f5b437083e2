"""The backends under test, as the ``backend`` fixture (conftest.py) hands them out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from vidim.store import StateStore


class FakeClock:
    """Seconds that pass only when a test says so (the clock of Memory and SQLite leases)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """One backend under test: builds its stores and lets lease time pass."""

    def __init__(self, name: str, factory: Callable[[], StateStore], clock: FakeClock | None):
        self.name = name
        self._factory = factory
        self._clock = clock

    def new_store(self) -> StateStore:
        """A store object on this backend's data (not opened yet)."""
        return self._factory()

    async def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass on the lease clock: Redis's own, or the fake one."""
        if self._clock is None:
            await asyncio.sleep(seconds)  # Redis expires leases on its own clock
        else:
            self._clock.now += seconds

    def run(self, scenario: Callable[[StateStore], Awaitable[None]]) -> None:
        """Run ``scenario`` on an open store of this backend in a new event loop, bounded."""

        async def main() -> None:
            async with self.new_store() as store:
                await asyncio.wait_for(scenario(store), timeout=30)

        asyncio.run(main())

"""Whether this worker still owns its partitions, asked before it writes under at_least_once.

A worker paused past the session timeout (``kill -STOP``, a frozen VM, a long stall) has lost
its partitions to another worker of the group. When it resumes, its fetcher and its commit
timer may run before a heartbeat tells it so, and what it sends then would land after the new
owner's: the table's changelog would end with the older records. Under exactly_once the new
owner's transactions fence it. Under at_least_once nothing does, so the worker asks first.

The broker keeps a member for a session timeout after the last heartbeat or commit it heard
from it, and, once a rebalance begins, for the rebalance timeout while it waits for the member
to join again. A commit or heartbeat that succeeded, sent less than half the shorter of the two
ago, is proof enough; past that, one heartbeat asks the broker. The clock counts time the
machine spent suspended, which a paused VM's monotonic clock may not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from streams.errors import PartitionsLost

Heartbeat = Callable[[], Awaitable[bool | None]]  # streams.engine.heartbeat, on the consumer


def boottime() -> float:
    """Seconds since boot, suspended time included (Linux); elsewhere the monotonic clock."""
    return time.clock_gettime(CLOCK)


CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class Lease:
    def __init__(self, heartbeat: Heartbeat, in_group: Callable[[], bool],
                 session_timeout: float, rebalance_timeout: float | None = None,
                 clock: Callable[[], float] = boottime) -> None:
        self.heartbeat = heartbeat
        self.in_group = in_group
        self.session_timeout = session_timeout
        self.window = min(session_timeout, rebalance_timeout or session_timeout) / 2
        self.clock = clock
        self.since = clock()  # when the last proof of membership was sent

    def renewed(self, sent: float) -> None:
        """A commit, join or heartbeat sent at ``sent`` (``clock``'s time) succeeded."""
        self.since = max(self.since, sent)

    async def hold(self) -> None:
        """Return if the worker still owns its partitions; else raise :class:`PartitionsLost`."""
        if not self.in_group():
            raise self._lost()
        if self.clock() - self.since < self.window:
            return
        asked = self.clock()
        if not await self._answer(asked):
            raise self._lost()
        self.renewed(asked)

    async def _answer(self, asked: float) -> bool:
        """The broker's answer; no answer for a whole session means the group went on."""
        while True:
            left = self.session_timeout - (self.clock() - asked)
            if left <= 0:
                return False
            answer = None  # no coordinator known in time: ask again
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(self.heartbeat(), left)
            if answer is not None:
                return answer
            await asyncio.sleep(0.1)

    def _lost(self) -> PartitionsLost:
        return PartitionsLost(
            "this worker was cut off from its group for longer than the session timeout "
            f"(SMI_SESSION_TIMEOUT_SECONDS={self.session_timeout:g}): paused, stalled or "
            "unable to reach the broker. Its partitions went to another worker, so it stops "
            "without sending what it decided meanwhile (the new owner decides those inputs "
            "again). Start it again to rejoin the group")

"""Whether this worker still owns its partitions, asked before it writes under at_least_once.

A worker paused past the session timeout (``kill -STOP``, a frozen VM, a long stall) has lost
its partitions to another worker of the group. When it resumes, its fetcher and its commit
timer may run before a heartbeat tells it so, and what it sends then would land after the new
owner's: the table's changelog would end with the older records. Under exactly_once the new
owner's transactions fence it. Under at_least_once nothing does, so the worker asks first.

The broker keeps a member for a session timeout after the last heartbeat, join or commit it
heard from it. A commit or heartbeat that succeeded, sent less than half a session ago, is
proof enough; past that, one heartbeat asks the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from streams.errors import PartitionsLost

Heartbeat = Callable[[], Awaitable[bool | None]]  # streams.engine.heartbeat, on the consumer


class Lease:
    def __init__(self, heartbeat: Heartbeat, in_group: Callable[[], bool],
                 session_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat = heartbeat
        self.in_group = in_group
        self.session_timeout = session_timeout
        self.clock = clock
        self.since = clock()  # when the last proof of membership was sent

    def renewed(self, sent: float) -> None:
        """A commit, join or heartbeat sent at ``sent`` (``clock``'s time) succeeded."""
        self.since = max(self.since, sent)

    async def hold(self) -> None:
        """Return if the worker still owns its partitions; else raise :class:`PartitionsLost`."""
        if not self.in_group():
            raise self._lost()
        if self.clock() - self.since < self.session_timeout / 2:
            return
        asked = self.clock()
        if not await self._answer(asked):
            raise self._lost()
        self.renewed(asked)

    async def _answer(self, asked: float) -> bool:
        """The broker's answer; no answer for a whole session means the group went on."""
        while (answer := await self.heartbeat()) is None:
            if self.clock() - asked > self.session_timeout:
                return False
            await asyncio.sleep(0.1)
        return answer

    def _lost(self) -> PartitionsLost:
        return PartitionsLost(
            "this worker was cut off from its group for longer than the session timeout "
            f"(SMI_SESSION_TIMEOUT_SECONDS={self.session_timeout:g}): paused, stalled or "
            "unable to reach the broker. Its partitions went to another worker, so it stops "
            "without sending what it decided meanwhile (the new owner decides those inputs "
            "again). Start it again to rejoin the group")

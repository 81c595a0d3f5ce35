"""What the operator's page shows of one worker as it happens: the latest corrections,
rejections and dead letters with the input that caused each, corrections per cause per
minute, and the table's devices by status, counted now and then rather than on every poll.

The agents add to these as they decide, so each addition is a deque append or a counter
bump; the work of turning them into JSON is done when the page asks (``streams/fleet.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from schemas.models import DeadLetter, Rejection, StatusCorrection

TAIL_SIZE = 50  # entries each worker keeps; the page merges the group's
MINUTES = 60  # of corrections per cause per minute
INPUT_TEXT_LIMIT = 2_000  # characters of an input shown beside what it caused
KINDS = {StatusCorrection: "correction", Rejection: "rejection", DeadLetter: "dead letter"}


@dataclass(frozen=True)
class Input:
    """The message that was being decided: where it was read, and what it carried (bytes as
    read, or the decoded CPL entry)."""

    topic: str
    partition: int
    offset: int
    value: bytes | BaseModel | None

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, BaseModel):
            text = value.model_dump_json()
        else:
            text = (value or b"").decode("utf-8", errors="replace")
        if len(text) > INPUT_TEXT_LIMIT:
            text = text[:INPUT_TEXT_LIMIT] + "..."
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "value": text}


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    output: BaseModel
    cause: Input | None

    def to_json(self) -> dict[str, Any]:
        output = self.output.model_dump(mode="json")
        return {"seq": self.seq, "kind": self.kind, "at": output.get("at"),
                "device_id": output.get("device_id"), "output": output,
                "input": self.cause.to_json() if self.cause else None}


class Tail:
    """The last :data:`TAIL_SIZE` corrections, rejections and dead letters, newest last."""

    def __init__(self, size: int = TAIL_SIZE) -> None:
        self.entries: deque[Entry] = deque(maxlen=size)
        self.seq = 0
        # the input being decided, set by the agents for every event: the record as read (or
        # an Input), with its topic, partition, offset and value; made an Input only for
        # the few events that have an output worth showing
        self.cause: Any = None

    def add(self, output: BaseModel) -> None:
        kind = KINDS.get(type(output))
        if kind is None:
            return
        self.seq += 1
        c = self.cause
        cause = None if c is None else Input(c.topic, c.partition, c.offset, c.value)
        self.entries.append(Entry(self.seq, kind, output, cause))

    def to_json(self) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in reversed(self.entries)]


class PerMinute:
    """Corrections per cause in each of the last :data:`MINUTES` minutes (wall clock)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.minutes: dict[int, Counter[str]] = {}

    def add(self, cause: str) -> None:
        minute = int(self.clock() // 60)
        counts = self.minutes.get(minute)
        if counts is None:
            counts = self.minutes[minute] = Counter()
            self._forget_before(minute - MINUTES + 1)
        counts[cause] += 1

    def _forget_before(self, minute: int) -> None:
        for old in [m for m in self.minutes if m < minute]:
            del self.minutes[old]

    def to_json(self) -> dict[str, dict[str, int]]:
        """By the minute's start (epoch seconds, as text: a JSON key), counts by cause."""
        first = int(self.clock() // 60) - MINUTES + 1
        return {str(m * 60): dict(c) for m, c in sorted(self.minutes.items()) if m >= first}


class CachedCount:
    """A count of the table that takes a scan (``streams.tables.table_statuses``), kept and
    shared by every caller until it is older than ``refresh`` seconds: at least
    ``min_age``, and ten times what the last scan took, so that scans take a tenth of the
    worker's time at most however big the table and however many pages poll it. A count
    made under another ``key`` (the partitions this worker owns) is not used."""

    def __init__(self, count: Callable[[], Awaitable[Counter[str]]],
                 key: Callable[[], object] = lambda: None, min_age: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.count = count
        self.key = key
        self.min_age = min_age
        self.clock = clock
        self.counted_key: object = None
        self.value: Counter[str] | None = None
        self.taken_at = 0.0
        self.took = 0.0
        self.running: asyncio.Future[Counter[str]] | None = None

    @property
    def refresh(self) -> float:
        return max(self.min_age, 10 * self.took)

    def age(self) -> float | None:
        return None if self.value is None else self.clock() - self.taken_at

    async def get(self) -> Counter[str]:
        age = self.age()
        if age is not None and age < self.refresh and self.counted_key == self.key():
            assert self.value is not None
            return self.value
        if self.running is None:
            self.running = asyncio.ensure_future(self._scan())
        return await asyncio.shield(self.running)

    async def _scan(self) -> Counter[str]:
        started, key = self.clock(), self.key()
        try:
            value = await self.count()
        finally:
            self.running = None
        self.value, self.counted_key = value, key
        self.taken_at, self.took = self.clock(), self.clock() - started
        return value

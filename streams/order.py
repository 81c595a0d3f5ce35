"""Each partition group's input in timestamp order, as Kafka Streams orders co-partitioned input.

Partition *p* of ``smi.inventory``, ``duis.service-requests`` and ``duis.device-responses`` is
one **partition group**: a device's record lives on partition *p*, and every input about it
must be decided in one order against it, whatever order the fetcher read the topics in. The
worker buffers what it fetched of each, and decides the item with the lowest :data:`Key`
first: timestamp, then topic rank (CPL, inventory, requests, responses), then partition and
offset. ``smi replay`` merges the topics by the same key, so a backlog, a restart and a replay
decide alike.

A group holds back while one of its partitions has nothing buffered but is not caught up (it
has records on the broker, or its end is not known yet), for at most ``idle`` seconds:
Kafka Streams' ``max.task.idle.ms``. A partition that is caught up is never waited for, so
live traffic is decided as it comes.

CPL changes take part at their own timestamps. Every worker reads all of ``cpl.entries``
(``streams/cpl.py``) into a :class:`CplTimeline`, and each group reads that timeline with
cursors of its own, as one more input of the group: a removal applies to exactly the events
after it on every partition, and each group decides against the CPL as of its own time. A
group remembers how far it got in each CPL partition (:attr:`PartitionGroup.applied`, kept in
the table by the caller), so that after a restart the CPL messages it had already applied are
taken first, as state only, and not applied again; one that came late is still applied.

Nothing here knows Kafka or faust: records are anything with ``timestamp`` and ``offset``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

Key = tuple[int, int, int, int]  # timestamp (ms), topic rank, partition, offset


class CplItem(NamedTuple):
    """A CPL message: its merge key and the decoded entry (None for one that is not valid:
    it holds its place in the order, as in replay's merge, and changes nothing)."""

    key: Key
    entry: Any


class Step(NamedTuple):
    """One item a group decides: a record of ``topic``, or a :class:`CplItem` (``topic`` is
    then the CPL's). ``known`` is True for a CPL item the group had taken before a restart:
    its effects are in the table already, so it only updates the group's CPL."""

    key: Key
    topic: str
    item: Any
    known: bool = False


@dataclass
class CplTimeline:
    """Every valid CPL message, per CPL partition in offset order, and which partitions the
    reader has read to their end."""

    partitions: int
    entries: list[list[CplItem]] = field(default_factory=list)
    caught_up: list[bool] = field(default_factory=list)
    version: int = 0  # moved on by every change, so that groups know to look again

    def __post_init__(self) -> None:
        self.entries = [[] for _ in range(self.partitions)]
        self.caught_up = [False] * self.partitions

    def add(self, partition: int, item: CplItem) -> None:
        self.entries[partition].append(item)
        self.version += 1

    def set_caught_up(self, partition: int, caught_up: bool) -> None:
        if self.caught_up[partition] != caught_up:
            self.caught_up[partition] = caught_up
            self.version += 1


class PartitionGroup:
    """Partition ``partition`` of each device topic (``topics``, in rank order from 1) and the
    CPL timeline, merged by :data:`Key`."""

    def __init__(self, partition: int, topics: Sequence[str], cpl_topic: str,
                 timeline: CplTimeline, applied: Sequence[int] | None = None) -> None:
        self.partition = partition
        self.queues: list[tuple[int, str, deque[Any]]] = [
            (rank, topic, deque()) for rank, topic in enumerate(topics, 1)]
        self._by_topic = {topic: queue for _, topic, queue in self.queues}
        self.cpl_topic = cpl_topic
        self.timeline = timeline
        self.cursors = [0] * timeline.partitions
        # the CPL as of the last step decided (see apply_cpl)
        self.cpl: dict[str, dict[str, Any]] = {}
        # per CPL partition, the offset after the last message applied (before a restart: the
        # ones below it are known)
        self.restored = list(applied or [])
        self.applied = list(applied or [0] * timeline.partitions)
        self.blocked_since: float | None = None
        self.starved: list[str] = []  # the device topics the group is waiting for
        self._went_on = False  # the wait under way has run out (warned once)
        self._cpl_head: tuple[Key, int] | None = None
        self._cpl_waiting = False
        self._cpl_version = -1

    def add(self, topic: str, records: Iterable[Any]) -> None:
        self._by_topic[topic].extend(records)

    def buffered(self, topic: str) -> int:
        return len(self._by_topic[topic])

    def take(self, caught_up: Callable[[str], bool], now: float, idle: float,
             limit: int) -> list[Step]:
        """Up to ``limit`` items in key order, stopping where the order is not yet known."""
        steps = self._known()
        self.starved = []
        while len(steps) < limit:
            step, waiting = self._head(caught_up)
            if step is None:
                break
            if waiting and not self._may_go(now, idle, caught_up):
                self.starved = self._lagging(caught_up)
                break
            if not waiting:
                self.blocked_since, self._went_on = None, False
            steps.append(self._pop(step))
        return steps

    def _may_go(self, now: float, idle: float, caught_up: Callable[[str], bool]) -> bool:
        """Whether the wait for a partition that is not caught up has lasted ``idle``."""
        if self.blocked_since is None:
            self.blocked_since = now
        if now - self.blocked_since < idle:
            return False
        if not self._went_on:
            self._went_on = True
            log.warning("partition group %d waited %.1f s for %s, with records on the broker, "
                        "and goes on without them (SMI_MAX_TASK_IDLE): their order against "
                        "what it decides now is not kept", self.partition, idle,
                        ", ".join(self._waited_for(caught_up)))
        return True

    def _lagging(self, caught_up: Callable[[str], bool]) -> list[str]:
        """The device topics with nothing buffered that are not caught up."""
        return [topic for _, topic, queue in self.queues if not queue and not caught_up(topic)]

    def _waited_for(self, caught_up: Callable[[str], bool]) -> list[str]:
        names = [f"{topic}[{self.partition}]" for topic in self._lagging(caught_up)]
        return names + [f"{self.cpl_topic}[{p}]" for p, done in enumerate(self.timeline.caught_up)
                        if not done and self.cursors[p] == len(self.timeline.entries[p])]

    def _head(self, caught_up: Callable[[str], bool]) -> tuple[Step | None, bool]:
        """The item with the lowest key, and whether a partition may still hold a lower one."""
        best: Step | None = None
        waiting = False
        for rank, topic, queue in self.queues:
            if queue:
                record = queue[0]
                key = (record.timestamp, rank, self.partition, record.offset)
                if best is None or key < best.key:
                    best = Step(key, topic, record)
            elif not caught_up(topic):
                waiting = True
        cpl, cpl_waiting = self._next_cpl()
        if cpl is not None and (best is None or cpl[0] < best.key):
            best = Step(cpl[0], self.cpl_topic, cpl[1])
        return best, waiting or cpl_waiting

    def _next_cpl(self) -> tuple[tuple[Key, int] | None, bool]:
        """The lowest CPL item not taken (its key and partition), and whether a CPL partition
        the reader has not read to its end may still hold a lower one; cached per version."""
        if self._cpl_version != self.timeline.version:
            self._cpl_version = self.timeline.version
            self._cpl_head, self._cpl_waiting = None, False
            for partition, entries in enumerate(self.timeline.entries):
                cursor = self.cursors[partition]
                if cursor < len(entries):
                    key = entries[cursor].key
                    if self._cpl_head is None or key < self._cpl_head[0]:
                        self._cpl_head = (key, partition)
                elif not self.timeline.caught_up[partition]:
                    self._cpl_waiting = True
        return self._cpl_head, self._cpl_waiting

    def _known(self) -> list[Step]:
        """The CPL messages the group had applied before a restart that the reader has read
        since, in key order, ahead of anything else: the CPL as it was."""
        known = []
        for partition, entries in enumerate(self.timeline.entries):
            end = self.restored[partition] if partition < len(self.restored) else 0
            while (cursor := self.cursors[partition]) < len(entries) and (
                    entries[cursor].key[3] < end):
                known.append(self._cpl_step(partition, True))
        return sorted(known)

    def _pop(self, step: Step) -> Step:
        if step.topic != self.cpl_topic:
            self._by_topic[step.topic].popleft()
            return step
        return self._cpl_step(step.item, False)

    def _cpl_step(self, partition: int, known: bool) -> Step:
        item = self.timeline.entries[partition][self.cursors[partition]]
        self.cursors[partition] += 1
        self.applied[partition] = item.key[3] + 1
        self._cpl_version = -1  # look again
        return Step(item.key, self.cpl_topic, item, known)

    def apply_cpl(self, step: Step) -> None:
        """Take a CPL step's entry into the group's CPL: by whoever decides the steps, in
        their order, since :meth:`take` hands over many steps at once."""
        entry = step.item.entry
        if entry is not None:
            self.cpl[entry.key] = entry.model_dump(mode="json")


class Ordering:
    """The partition groups of the partitions a worker owns, made as they are first needed
    (``restore`` tells where a group had got to, from the table) and forgotten in a
    rebalance; ``buffer_limit`` records buffered per partition at most, before the caller
    stops fetching it."""

    def __init__(self, topics: Sequence[str], cpl_topic: str, timeline: CplTimeline,
                 idle: float, restore: Callable[[int], Sequence[int] | None],
                 buffer_limit: int) -> None:
        self.topics = tuple(topics)
        self.cpl_topic = cpl_topic
        self.timeline = timeline
        self.idle = idle
        self.restore = restore
        self.buffer_limit = buffer_limit
        self.groups: dict[int, PartitionGroup] = {}
        self._paused: set[tuple[str, int]] = set()

    def group(self, partition: int) -> PartitionGroup:
        group = self.groups.get(partition)
        if group is None:
            group = PartitionGroup(partition, self.topics, self.cpl_topic, self.timeline,
                                   self.restore(partition))
            self.groups[partition] = group
        return group

    def add(self, topic: str, partition: int, records: Iterable[Any]) -> None:
        self.group(partition).add(topic, records)

    def take(self, partitions: Iterable[int], caught_up: Callable[[str, int], bool],
             now: float, limit: int) -> list[tuple[PartitionGroup, list[Step]]]:
        """What each group of ``partitions`` can decide now, up to ``limit`` items each."""
        taken = []
        for partition in partitions:
            group = self.group(partition)
            steps = group.take(partial(_flip, caught_up, partition), now, self.idle, limit)
            if steps:
                taken.append((group, steps))
        return taken

    def starved(self) -> tuple[str, int] | None:
        """The (topic, partition) that the group waiting longest is waiting for."""
        waiting = [(group.blocked_since, partition, group.starved[0])
                   for partition, group in self.groups.items() if group.starved]
        if not waiting:
            return None
        _, partition, topic = min(waiting)
        return topic, partition

    def full_and_drained(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The (topic, partition) pairs whose buffer has just filled, and those that were full
        and have drained to half."""
        full, drained = [], []
        for partition, group in self.groups.items():
            for topic in self.topics:
                count, pair = group.buffered(topic), (topic, partition)
                if count >= self.buffer_limit and pair not in self._paused:
                    self._paused.add(pair)
                    full.append(pair)
                elif pair in self._paused and count <= self.buffer_limit // 2:
                    self._paused.discard(pair)
                    drained.append(pair)
        return full, drained

    def clear(self) -> None:
        self.groups.clear()
        self._paused.clear()


def _flip(caught_up: Callable[[str, int], bool], partition: int, topic: str) -> bool:
    return caught_up(topic, partition)

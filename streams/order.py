"""Each partition group's input in timestamp order, as Kafka Streams orders co-partitioned input.

Partition *p* of ``smi.inventory``, ``duis.service-requests`` and ``duis.device-responses`` is
one **partition group**: a device's record lives on partition *p*, and every input about it
must be decided in one order against it, whatever order the fetcher read the topics in. The
worker buffers what it fetched of each, and decides the item with the lowest :data:`Key`
first: time, then topic rank (CPL, inventory, requests, responses), then partition and
offset. The time is the record's **partition time**, as in Kafka Streams: the highest
timestamp on its partition up to it, so that a record whose producer's clock went back keeps
its place behind the one fetched before it, and what a group has fetched of a partition
bounds what it fetches next (its watermark, below). ``smi replay`` merges the topics by the
same key, so a backlog, a restart and a replay decide alike.

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

Records of another partition's devices leave the group as they are fetched (its
:attr:`~PartitionGroup.outbox`, forwarded by the caller), and records other groups forwarded
here join the merge by their original key, each source (another group's topic) in order. A
group waits for a source with nothing buffered here until that source's last watermark is
above the item it would decide (``streams/repartition.py``), or, for a group of the same
worker, until that group's own word is (:meth:`Ordering._share_watermarks`); that wait runs
out after ``idle`` seconds too. What a group keeps across a restart is its :class:`GroupState`.

Nothing here knows Kafka or faust: records are anything with ``timestamp`` and ``offset``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from streams import repartition
from streams.repartition import IDLE, UNKNOWN, Forwarded, Key, Watermark

log = logging.getLogger(__name__)

WATERMARK_EVERY = 0.05  # seconds between two watermarks of a group that only moved on


class CplItem(NamedTuple):
    """A CPL message: its merge key and the decoded entry (None for one that is not valid:
    it holds its place in the order, as in replay's merge, and changes nothing)."""

    key: Key
    entry: Any


class Fetched(NamedTuple):
    """A device record in a group's buffer: its merge key, the record (aiokafka's, or a
    :class:`~streams.repartition.Forwarded` one), what the classifier made of it (the event,
    or why it is not one) and the partition its device lives on."""

    key: Key
    record: Any
    decoded: Any
    home: int


FORWARDED = "~forwarded"  # the topic of a step that another group forwarded
Classify = Callable[[str, Any], tuple[Any, int]]  # (topic, record) -> (decoded, home)


def _in_place(partition: int) -> Classify:
    return lambda topic, record: (None, partition)


Source = tuple[int, int]  # another group's partition, and the rank of one of its topics


@dataclass
class GroupState:
    """What a group keeps in the table, so that it commits with the records it goes with:
    per CPL partition the offset after the last message applied; per source (another group's
    topic) the last watermark read from it, and the offset of the last forward taken; per
    topic of its own (by rank) the partition time at the offset it commits."""

    cpl: list[int]
    watermarks: dict[Source, Key] = field(default_factory=dict)
    forwarded: dict[Source, int] = field(default_factory=dict)
    times: dict[int, int] = field(default_factory=dict)

    def to_dict(self, partition: int) -> dict[str, Any]:
        return {"partition": partition, "cpl": list(self.cpl),  # a copy: the group moves on
                "watermarks": [[*source, *mark] for source, mark
                               in sorted(self.watermarks.items())],
                "forwarded": [[*source, offset] for source, offset
                              in sorted(self.forwarded.items())],
                "times": [[rank, time] for rank, time in sorted(self.times.items())]}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> GroupState:
        return cls(list(value["cpl"]),
                   {(q, rank): _restored((ts, r, p, o)) for q, rank, ts, r, p, o
                    in value.get("watermarks", ())},
                   {(q, rank): offset for q, rank, offset in value.get("forwarded", ())},
                   {rank: time for rank, time in value.get("times", ())})


def _restored(mark: Key) -> Key:
    """A watermark said before a restart or a rebalance, as it counts after: idle is unknown
    (the group that said it may have been sent records since, some to forward here); a key
    still holds (what that group fetches next comes after it)."""
    return UNKNOWN if mark == IDLE else mark


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
    times: list[int | None] = field(default_factory=list)  # per partition, its partition time

    def __post_init__(self) -> None:
        self.entries = [[] for _ in range(self.partitions)]
        self.caught_up = [False] * self.partitions
        self.times = [None] * self.partitions

    def time_of(self, partition: int, timestamp: int) -> int:
        """The partition time of the partition's next message, which has ``timestamp``."""
        time = self.times[partition]
        if time is None or timestamp > time:
            self.times[partition] = time = timestamp
        return time

    def add(self, partition: int, item: CplItem) -> None:
        self.entries[partition].append(item)
        self.version += 1

    def set_caught_up(self, partition: int, caught_up: bool) -> None:
        if self.caught_up[partition] != caught_up:
            self.caught_up[partition] = caught_up
            self.version += 1


class PartitionGroup:
    """Partition ``partition`` of each device topic (``topics``, in rank order from 1), what
    other groups forwarded to it (``streams/repartition.py``) and the CPL timeline, merged by
    :data:`Key`. ``partitions`` is how many groups there are; ``classify`` tells what a record
    is and where its device lives (by default, here).

    A record whose device lives elsewhere goes to :attr:`outbox` as it is fetched, to be
    forwarded at once: forwards are not ordered (the group they go to orders them), so no
    group waits for another's decisions, only for its fetches (:meth:`watermarks`)."""

    def __init__(self, partition: int, topics: Sequence[str], cpl_topic: str,
                 timeline: CplTimeline, state: GroupState | None = None,
                 partitions: int | None = None, classify: Classify | None = None,
                 generation: int = 0) -> None:
        self.partition = partition
        self.generation = generation  # the consumer group's, when this group was made
        self.partitions = partitions or timeline.partitions
        self.classify = classify or _in_place(partition)
        self.queues: list[tuple[int, str, deque[Fetched]]] = [
            (rank, topic, deque()) for rank, topic in enumerate(topics, 1)]
        self._by_topic = {topic: queue for _, topic, queue in self.queues}
        self._rank = {topic: rank for rank, topic, _ in self.queues}
        self.fetched: dict[str, Key] = {}  # per topic, the key of the last record fetched
        self._idle: set[str] = set()  # topics read to their end and handed nothing since
        self.next_offset: dict[str, int] = {}  # per topic, after the last record fetched
        self.outbox: list[Fetched] = []  # records to forward to their device's group
        self.routed: dict[Source, int] = {}  # per (home, rank), the last offset sent there
        self.forwards: dict[Source, deque[Fetched]] = {}  # forwarded here, by source
        self.sources = [(q, rank) for q in range(self.partitions) if q != partition
                        for rank in range(1, len(topics) + 1)]
        self._source_set = set(self.sources)
        self.cpl_topic = cpl_topic
        self.timeline = timeline
        self.cursors = [0] * timeline.partitions
        # the CPL as of the last step decided (see apply_cpl)
        self.cpl: dict[str, dict[str, Any]] = {}
        restored = state is not None
        state = state or GroupState([0] * timeline.partitions)
        # per CPL partition, the offset after the last message applied (before a restart: the
        # ones below it are known)
        self.restored = list(state.cpl)
        self.state = state
        # per topic, its partition time: the highest timestamp fetched up to the record
        # before the next (see add); from the table, as of the offset committed
        self.times = {topic: state.times[rank] for rank, topic, _ in self.queues
                      if rank in state.times}
        # the state as the table holds it (None: not there yet), kept by the caller
        self.saved: dict[str, Any] | None = state.to_dict(partition) if restored else None
        self._seen = dict(state.forwarded)  # forwards buffered or taken: a second copy is not
        # what the group waits by: the last watermark read from each source. The state keeps
        # only those read below the repartition offset it commits with (:meth:`settle`): after
        # a restart the forwards before a later watermark are read again before it counts.
        self.marks = dict(state.watermarks)
        # the watermarks of groups of this worker, read from them directly (Ordering.take),
        # once the repartition partition has been read to its end since this group was made
        self.local: dict[Source, Key] = {}
        self.heard_all = False
        self._unsettled: deque[tuple[int, Source, Key]] = deque()
        self._floor: Key | None = None  # the lowest watermark of a source with nothing here
        self.repartition_next: int | None = None  # after the last repartition record read
        self.published: list[Key] = []  # the last watermarks this group sent
        self.published_at = float("-inf")
        self.outgoing: list[Key] | None = None  # the watermarks to send with this round's steps
        self.dirty = False  # the state changed without a step (a watermark was read)
        self.blocked_since: float | None = None
        # the (topic, partition) pairs the group is waiting for: its own partitions that are
        # not caught up, else those of other groups whose watermarks hold it back
        self.starved: list[tuple[str, int]] = []
        self._went_on = False  # the wait under way has run out (warned once)
        self._cpl_head: tuple[Key, int] | None = None
        self._cpl_waiting = False
        self._cpl_version = -1

    @property
    def applied(self) -> list[int]:
        return self.state.cpl

    def add(self, topic: str, records: Sequence[Any]) -> None:
        if not records:
            return
        rank, queue, partition = self._rank[topic], self._by_topic[topic], self.partition
        time = self.times.get(topic, records[0].timestamp)
        for record in records:
            if (stamp := record.timestamp) > time:
                time = stamp
            decoded, home = self.classify(topic, record)
            item = Fetched((time, rank, partition, record.offset), record, decoded, home)
            if home == partition:
                queue.append(item)
            else:
                self.outbox.append(item)
                self.routed[home, rank] = record.offset
        self._idle.discard(topic)
        self.times[topic] = time
        self.fetched[topic] = (time, rank, partition, records[-1].offset)
        self.next_offset[topic] = records[-1].offset + 1

    def take_outbox(self) -> list[Fetched]:
        outbox, self.outbox = self.outbox, []
        return outbox

    def add_repartition(self, messages: Iterable[Forwarded | Watermark | None],
                        offsets: Iterable[int]) -> None:
        """What the repartition partition of this group brought: forwards (a copy already
        buffered or taken is dropped) and other groups' watermarks (the latest counts)."""
        for message, offset in zip(messages, offsets, strict=True):
            self.repartition_next = offset + 1
            if isinstance(message, Watermark):
                self._watermark(message)
            elif isinstance(message, Forwarded):
                self._forwarded(message)

    def _watermark(self, message: Watermark) -> None:
        # said before a restart or a rebalance (not "lower": a group deleted while empty for
        # longer than the broker keeps it starts again at generation 1)
        stale = message.generation != self.generation
        for rank, below in enumerate(message.below, 1):
            if (source := (message.source, rank)) in self._source_set:
                below = _restored(below) if stale else below
                self.marks[source] = below
                self._unsettled.append((message.at, source, below))
        self._floor, self.dirty = None, True

    def use_local(self, marks: dict[Source, Key]) -> None:
        if marks != self.local:
            self.local, self._floor = marks, None

    def has_forwards(self, source: Source, offset: int) -> bool:
        """Whether every forward of ``source`` up to its record at ``offset`` has come."""
        return self._seen.get(source, -1) >= offset

    def _mark(self, source: Source) -> Key:
        """How far ``source`` has nothing left to forward here: its own word, when it is a
        group of this worker, else the last watermark read from the repartition topic."""
        local = self.local.get(source)
        return local if local is not None else self.marks.get(source, UNKNOWN)

    def settle(self) -> None:
        """Keep in the state the watermarks read below the repartition offset to commit, and
        each topic's partition time at the offset it commits (:meth:`committable`): its first
        record buffered, whose key has it, else after the last fetched."""
        end = self.repartition_committable()
        unsettled = self._unsettled
        while unsettled and end is not None and unsettled[0][0] < end:
            _, source, below = unsettled.popleft()
            self.state.watermarks[source] = below
        for rank, topic, queue in self.queues:
            if queue:
                self.state.times[rank] = queue[0].key[0]
            elif topic in self.times:
                self.state.times[rank] = self.times[topic]

    def _forwarded(self, message: Forwarded) -> None:
        source = (message.partition, message.rank)
        if source not in self._source_set or message.offset <= self._seen.get(source, -1):
            return
        self._seen[source] = message.offset
        decoded, home = self.classify(message.topic, message)
        key = (message.timestamp, message.rank, message.partition, message.offset)
        queue = self.forwards.setdefault(source, deque())
        if not queue:
            self._floor = None
        queue.append(Fetched(key, message, decoded, home))

    def buffered(self, topic: str) -> int:
        return len(self._by_topic[topic])

    def committable(self, topic: str) -> int | None:
        """The offset to commit for ``topic``: its first record buffered to decide, else the
        one after the last fetched (None: nothing fetched). Those before it are decided or
        forwarded."""
        queue = self._by_topic[topic]
        return queue[0].record.offset if queue else self.next_offset.get(topic)

    def repartition_committable(self) -> int | None:
        """The repartition offset to commit: the first forward not yet decided, else the one
        after the last record read (None: nothing read)."""
        waiting = [queue[0].record.at for queue in self.forwards.values() if queue]
        return min(waiting) if waiting else self.repartition_next

    def take(self, caught_up: Callable[[str], bool], now: float, idle: float,
             limit: int) -> list[Step]:
        """Up to ``limit`` items in key order, stopping where the order is not yet known; and
        the watermarks to send with them, if due (:attr:`outgoing`)."""
        steps = self._known()
        self.starved = []
        while len(steps) < limit:
            step, waiting = self._head(caught_up)
            if not waiting:  # nothing held back: the next wait gets its whole idle time
                self.blocked_since, self._went_on = None, False
            if step is None:
                break
            if waiting and not self._may_go(now, idle, caught_up, step.key):
                self.starved = self._waiting_on(caught_up, step.key)
                break
            steps.append(self._pop(step))
        self.outgoing = self._due(caught_up, now)
        return steps

    def watermarks(self, caught_up: Callable[[str], bool]) -> list[Key]:
        """Per topic, a key below which this group has nothing left to forward: everything it
        fetched is forwarded already, and what it fetches next comes after (records come in
        key order within a partition); idle for a topic it has read to the end and been handed
        nothing of since."""
        return [IDLE if self._still_idle(topic, caught_up) else self.fetched.get(topic, UNKNOWN)
                for _, topic, _ in self.queues]

    def _still_idle(self, topic: str, caught_up: Callable[[str], bool]) -> bool:
        """Read to its end, or read to its end before and handed nothing since: a record the
        broker has and the consumer has not handed over yet does not end idleness. Its last
        fetched key may be seconds old (a quiet partition), and sending it would hold every
        other group back until a newer watermark came through the repartition topic (a few
        hundred ms of live latency); a caught-up partition's next record is not waited for
        anyway."""
        if caught_up(topic):
            self._idle.add(topic)
            return True
        return topic in self._idle

    def _due(self, caught_up: Callable[[str], bool], now: float) -> list[Key] | None:
        """The watermarks to send now: at once when one went down (records after the group
        had read to the end) or all are idle, else at most every :data:`WATERMARK_EVERY`."""
        if self.partitions == 1:
            return None
        marks = self.watermarks(caught_up)
        if marks == self.published or all(mark == UNKNOWN for mark in marks):
            return None
        down = not self.published or any(
            m < p for m, p in zip(marks, self.published, strict=True))
        idle = all(mark == IDLE for mark in marks)
        if not (down or idle) and now - self.published_at < WATERMARK_EVERY:
            return None
        self.published, self.published_at = marks, now
        return marks

    def _may_go(self, now: float, idle: float, caught_up: Callable[[str], bool],
                key: Key) -> bool:
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
                        ", ".join(self._waited_for(caught_up, key)))
        return True

    def _lagging(self, caught_up: Callable[[str], bool]) -> list[str]:
        """The device topics with nothing buffered that are not caught up."""
        return [topic for _, topic, queue in self.queues if not queue and not caught_up(topic)]

    def _waiting_on(self, caught_up: Callable[[str], bool], key: Key) -> list[tuple[str, int]]:
        """What a fetch must bring for the group to go on: its own lagging partitions, else
        the partitions of the sources whose watermarks are too low (a group fetches, and so
        moves its watermarks on, only when the consumer fetches its partitions)."""
        own = [(topic, self.partition) for topic in self._lagging(caught_up)]
        topics = [topic for _, topic, _ in self.queues]
        return own or [(topics[rank - 1], q) for q, rank in self._forward_waits(key)]

    def _waited_for(self, caught_up: Callable[[str], bool], key: Key) -> list[str]:
        names = [f"{topic}[{self.partition}]" for topic in self._lagging(caught_up)]
        names += [f"{self.cpl_topic}[{p}]" for p, done in enumerate(self.timeline.caught_up)
                  if not done and self.cursors[p] == len(self.timeline.entries[p])]
        topics = [topic for _, topic, _ in self.queues]
        return names + [f"what {topics[rank - 1]}[{q}] forwards"
                        for q, rank in self._forward_waits(key)]

    def _forward_waits(self, key: Key) -> list[Source]:
        """The sources with nothing buffered here that may still forward a lower key."""
        return [source for source in self.sources if not self.forwards.get(source)
                and self._mark(source) <= key]

    def _lowest_mark(self) -> Key:
        """The lowest watermark of a source with nothing buffered here (cached until either
        changes)."""
        if self._floor is None:
            self._floor = min((self._mark(s) for s in self.sources
                               if not self.forwards.get(s)), default=IDLE)
        return self._floor

    def _head(self, caught_up: Callable[[str], bool]) -> tuple[Step | None, bool]:
        """The item with the lowest key, and whether an input may still hold a lower one."""
        # the lowest key and where it is; one Step, for the winner (this runs once a step)
        key: Key | None = None
        item: Any = None  # a record, or a CPL partition's number
        topic, waiting = "", False
        for _, name, queue in self.queues:
            if queue:
                if key is None or queue[0].key < key:
                    key, topic, item = queue[0].key, name, queue[0]
            elif not caught_up(name):
                waiting = True
        for queue in self.forwards.values():
            if queue and (key is None or queue[0].key < key):
                key, topic, item = queue[0].key, FORWARDED, queue[0]
        cpl, cpl_waiting = self._next_cpl()
        if cpl is not None and (key is None or cpl[0] < key):
            key, topic, item = cpl[0], self.cpl_topic, cpl[1]
        if key is None:
            return None, waiting or cpl_waiting
        return Step(key, topic, item), waiting or cpl_waiting or self._lowest_mark() <= key

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
        item = step.item
        if step.topic == FORWARDED:
            record = item.record
            source = (record.partition, record.rank)
            queue = self.forwards[source]
            queue.popleft()
            if not queue:
                self._floor = None
            self.state.forwarded[source] = record.offset
        elif step.topic != self.cpl_topic:
            self._by_topic[step.topic].popleft()
        else:
            return self._cpl_step(item, False)
        return step

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
                 idle: float, restore: Callable[[int], GroupState | None],
                 buffer_limit: int, repartition: str | None = None,
                 classify: Classify | None = None, partitions: int | None = None) -> None:
        self.topics = tuple(topics)
        self.cpl_topic = cpl_topic
        self.timeline = timeline
        self.idle = idle
        self.restore = restore
        self.buffer_limit = buffer_limit
        self.repartition = repartition  # the app's repartition topic (streams/repartition.py)
        self.classify = classify
        self.partitions = partitions or timeline.partitions  # of each device topic
        self.groups: dict[int, PartitionGroup] = {}
        self._paused: set[tuple[str, int]] = set()
        self.generation = 0  # the consumer group's, set by the consumer as it fetches

    def group(self, partition: int) -> PartitionGroup:
        group = self.groups.get(partition)
        if group is None:
            group = PartitionGroup(partition, self.topics, self.cpl_topic, self.timeline,
                                   self.restore(partition), self.partitions, self.classify,
                                   self.generation)
            self.groups[partition] = group
        return group

    def add(self, topic: str, partition: int, records: Sequence[Any]) -> None:
        if topic != self.repartition:
            self.group(partition).add(topic, records)
            return
        self.group(partition).add_repartition(
            [repartition.read(record, self.topics) for record in records],
            [record.offset for record in records])

    def take(self, partitions: Iterable[int], caught_up: Callable[[str, int], bool],
             now: float, limit: int) -> list[tuple[PartitionGroup, list[Step]]]:
        """What each group of ``partitions`` can decide now, up to ``limit`` items each; also
        a group with nothing to decide whose watermark is due or whose state changed."""
        groups = {partition: self.group(partition) for partition in partitions}
        if len(groups) > 1:
            self._share_watermarks(groups, caught_up, self.repartition)
        taken = []
        for partition, group in groups.items():
            steps = group.take(partial(_flip, caught_up, partition), now, self.idle, limit)
            if steps or group.outbox or group.outgoing is not None or group.dirty:
                group.dirty = False
                taken.append((group, steps))
        return taken

    @staticmethod
    def _share_watermarks(groups: dict[int, PartitionGroup],
                          caught_up: Callable[[str, int], bool], repartition: str | None
                          ) -> None:
        """Each group takes the watermarks of the other groups of this worker from them, not
        from the repartition topic, which brings them a produce and a fetch later (under
        exactly_once, a commit later). A group's word counts only once every record it sent
        here has come (the topic keeps a watermark behind the forwards it vouches for; this
        does the same by offset), and only once the repartition partition has been read to
        its end since the groups were made: what the groups before a restart or a rebalance
        forwarded is not in ``routed``. Until then its word is UNKNOWN, not the last one read
        from the topic, which may say idle from before it fetched what it is forwarding. A
        group that has fetched nothing yet leaves the last watermark read standing."""
        marks = {q: group.watermarks(partial(_flip, caught_up, q)) for q, group in groups.items()}
        for p, group in groups.items():
            group.heard_all = group.heard_all or repartition is None or caught_up(repartition, p)
            if not group.heard_all:
                continue
            group.use_local({
                (q, rank): mark if group.has_forwards(
                    (q, rank), groups[q].routed.get((p, rank), -1)) else UNKNOWN
                for q, said in marks.items() if q != p
                for rank, mark in enumerate(said, 1) if mark != UNKNOWN})

    def starved(self) -> tuple[str, int] | None:
        """The (topic, partition) that the group waiting longest is waiting for."""
        waiting = [(group.blocked_since, group.starved[0])
                   for group in self.groups.values() if group.starved]
        return min(waiting)[1] if waiting else None

    def empty(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs with nothing buffered: a group's watermark for them
        moves on only when they are fetched."""
        return [(topic, partition) for partition, group in self.groups.items()
                for topic in self.topics if not group.buffered(topic)]

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

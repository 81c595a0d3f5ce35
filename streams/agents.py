"""The agents: decode, call the rule, write the record, emit. Nothing else lives here.

The device topics' records go from the fetch into their partition groups, and from there to
:meth:`Processor.on_device_fetch` in time order, with the CPL's changes among them
(``streams/order.py``, routed by ``streams/transport.py``). The ``cpl.entries`` topic comes
through faust's stream in batches (``noack_take``), only to dead-letter what is not valid:
every worker reads the whole CPL itself (``streams/cpl.py``). Either way a batch is decided
under the consumer's ``batch_lock``: each event's record is written to the local store, its
outputs and changelog records are collected, the batch is sent (``streams/emit.py``) and
counted as done, all before the lock is let go, so a commit never splits a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import faust
from faust.types import EventT

from schemas.codec import dumps
from schemas.models import (
    Event,
    Source,
    StatusCorrection,
    device_key,
    source_id,
)
from streams import repartition
from streams import topics as t
from streams.backends import backend_of
from streams.core.decide import Output
from streams.cpl import CplReplica
from streams.decider import MAX_MESSAGE_BYTES, Decider, Incoming
from streams.emit import Emitter
from streams.errors import InvalidEvent, TablePartial
from streams.index import DevicesByFirmware
from streams.live import Input, PerMinute, Tail
from streams.metrics import Metrics
from streams.order import Fetched, GroupState, Ordering, PartitionGroup, Step
from streams.repartition import Key
from streams.settings import Settings
from streams.store import TableRecords
from streams.tables import RecentRecords, Tables, group_key, rebuilding_key
from streams.transport import BatchRoute, Consumer

log = logging.getLogger(__name__)


class Processor:
    """The worker's shell around the decider (``streams/decider.py``): it takes the partition
    groups' steps, keeps the table and the outputs (its :class:`~streams.decider.Outputs`),
    and counts what happened for ``/stats`` and ``/metrics``."""

    def __init__(self, settings: Settings, topics: t.Topics, tables: Tables,
                 emitter: Emitter, cpl_emitter: Emitter) -> None:
        self.settings = settings
        self.policy = settings.policy
        self.topics = topics
        self.tables = tables
        self.emitter = emitter  # one each: under exactly_once, the transactions of their inputs
        self.cpl_emitter = cpl_emitter
        self.output_names = {name: topic.get_topic_name() for name, topic in topics.outputs.items()}
        self.changelog_name = tables.device_to_record.changelog_topic.get_topic_name()
        # a restart of a RocksDB worker then reads only the changelog written after
        emitter.on_sent[self.changelog_name] = backend_of(tables.device_to_record).persisted
        self.metrics = Metrics()
        emitter.on_flushed = self.flushed
        self.tail = Tail()  # the page's live tail and chart (streams/live.py)
        self.per_minute = PerMinute()
        self.devices_by_firmware = DevicesByFirmware()
        self.recent = RecentRecords(settings.record_cache_size)
        self.records = TableRecords(tables.device_to_record, self.recent,
                                    self.devices_by_firmware, emitter)
        self.decider = Decider(self.policy, self.records, self)
        self.cpl = CplReplica(settings, MAX_MESSAGE_BYTES)
        self.cpl_name = settings.topic(t.CPL)
        self.repartition_name = t.repartition_topic(settings)
        self.homes = repartition.Homes(settings.partitions)

    async def on_device_fetch(self, groups: Sequence[tuple[PartitionGroup, Sequence[Step]]]
                              ) -> None:
        """What the partition groups let be decided now, each group's steps in order (the
        caller holds the batch lock); their outputs go out together."""
        for group, steps in groups:
            for item in group.take_outbox():
                self.forward(group, item)
            for step in steps:
                if step.topic == self.cpl_name:
                    await self.on_cpl_step(group, step)
                else:
                    self.on_device_step(group, step)
            self.save_state(group)
            if group.outgoing is not None:
                self.send_watermark(group, group.outgoing)
        await self.emitter.flush()

    def on_device_step(self, group: PartitionGroup, step: Step) -> None:
        """A device record of this group's devices, read here or forwarded here."""
        item: Fetched = step.item
        record = item.record
        name = self.topics.name_of[record.topic]
        self.metrics.messages_in[name] += 1
        self.tail.cause = record  # made an Input only if an output is shown
        self.emitter.inputs.append(record.timestamp)
        self.decider.on_decoded(record, name, item.decoded, group.cpl, group.partition)

    def classify(self, topic: str, record: Incoming) -> tuple[Event | InvalidEvent, int]:
        """What a device record carries, and the partition its device lives on (its own for
        one that is not valid: it is dead-lettered where it was read)."""
        decoded = self.decider.decode(record, self.topics.name_of[topic])
        if isinstance(decoded, InvalidEvent):
            return decoded, record.partition
        return decoded, self.homes(device_key(decoded))

    def forward(self, group: PartitionGroup, item: Fetched) -> None:
        """A record read here whose device lives on another partition, to that partition of
        the repartition topic, as it came (``streams/repartition.py``)."""
        record = item.record
        self.metrics.forwarded[self.topics.name_of[record.topic]] += 1
        headers = repartition.origin_headers(item.key[1], record.partition, record.offset,
                                             item.key[0])
        self.emitter.forward(self.repartition_name, item.home, group.partition,
                             device_key(item.decoded).encode(), record.value,
                             record.timestamp, headers)

    def send_watermark(self, group: PartitionGroup, below: list[Key]) -> None:
        """To every other group: nothing below ``below`` is left to forward from this one."""
        value, headers = repartition.watermark_message(group.partition, below, group.generation)
        for partition in range(self.settings.partitions):
            if partition != group.partition:
                self.emitter.forward(self.repartition_name, partition, group.partition,
                                     None, value, None, headers)

    async def on_cpl_step(self, group: PartitionGroup, step: Step) -> None:
        """A CPL message at its place in a group's order: a removal suspends the group's
        devices it covers, unless the group had applied it before a restart."""
        group.apply_cpl(step)
        entry = step.item.entry
        if entry is None or entry.status != "Removed" or step.known:
            return
        timestamp, _, partition, offset = step.key
        cause = Input(self.cpl_name, partition, offset, entry)
        self.emitter.inputs.append(timestamp)
        source = Source(topic=t.CPL, partition=partition, offset=offset, id=source_id(entry))
        await self.records.prepare_removal()
        self.tail.cause = cause
        for _ in self.decider.removing(entry, source, group.partition, group.cpl):
            # minutes over a large fleet: /live, /health and the timers answer meanwhile (the
            # batch lock stays held, as while the index is built)
            await asyncio.sleep(0)
            self.tail.cause = cause  # a CPL message may have been read meanwhile

    def save_state(self, group: PartitionGroup) -> None:
        """How far the group has applied each CPL partition and taken each other group's
        forwards, in the table and its changelog with the records it goes with."""
        key = group_key(group.partition)
        group.settle()
        value = group.state.to_dict(group.partition)
        if value == group.saved:  # most rounds change nothing of it: no record to recover
            return
        group.saved = value
        raw = dumps(value)
        self.records.backend.put(group.partition, key, value, raw)
        self.emitter.add_change(group.partition, key.encode(), raw)

    def group_state(self, partition: int) -> GroupState | None:
        """Where the group of ``partition`` had got to, from the table (None: a new group)."""
        if self.records.backend.get(partition, rebuilding_key(partition)) is not None:
            raise TablePartial(
                f"partition {partition} of the SMI table is what an `smi rebuild` that did "
                "not finish left: stop every worker of the group and run `smi rebuild` again")
        value = self.records.backend.get(partition, group_key(partition))
        return None if value is None else GroupState.from_dict(value)

    def emit(self, outputs: Sequence[Output], partition: int,
             emitter: Emitter | None = None) -> None:
        """To the partition of the input that caused them (``streams/emit.py``)."""
        emitter = emitter or self.emitter
        for name, key, payload in outputs:
            emitter.add(self.output_names[name], partition, key.encode(), dumps(payload))
            self.metrics.messages_out[name] += 1
            self.tail.add(payload)
            if type(payload) is StatusCorrection:  # isinstance of a model costs 3 times more
                self.metrics.corrections[payload.cause] += 1
                self.per_minute.add(payload.cause)

    def flushed(self, timestamps: list[int | None]) -> None:
        """The outputs of inputs with these timestamps were handed to the producer."""
        if timestamps:
            self.metrics.decided(timestamps, time.time())

    def emit_dead_letter(self, outputs: Sequence[Output], partition: int, name: str) -> None:
        """A CPL message's with the CPL partition's transaction, the others' with their own."""
        self.emit(outputs, partition, self.cpl_emitter if name == t.CPL else None)

    def outcome(self, name: str, outcome: str) -> None:
        self.metrics.outcomes[(name, outcome)] += 1
        if outcome == "dead-lettered":
            self.metrics.dead_letters[name] += 1

    async def on_cpl_events(self, events: Sequence[EventT]) -> None:
        for event in events:
            await self.on_cpl_message(event.message)
        await self.cpl_emitter.flush()
        for event in events:
            event.ack()

    async def on_cpl_message(self, message: Incoming) -> None:
        """Dead-letter a CPL message that is not valid; the partition groups take the valid
        ones from the worker's CPL replica, each at its own time."""
        self.metrics.messages_in[t.CPL] += 1
        self.tail.cause = message
        self.decider.on_cpl(message)


def register(app: faust.App, processor: Processor) -> dict[str, BatchRoute]:
    """The agents and timers; returns the route of each device topic's records, for the
    consumer (:meth:`streams.transport.Consumer.attach`): into the partition groups, and from
    there to the processor in time order."""
    topics, settings = processor.topics, processor.settings
    ordering = Ordering(topics.device_topic.topics[:-1], processor.cpl_name,
                        processor.cpl.timeline, settings.max_task_idle, processor.group_state,
                        buffer_limit(settings), processor.repartition_name, processor.classify)
    route = BatchRoute(processor.on_device_fetch, processor.cpl.ready, ordering)

    def forget_partitions(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # the partitions they covered may have moved, and recovery writes the table directly
        processor.devices_by_firmware.clear()
        processor.recent.clear()

    app.on_partitions_revoked.connect(forget_partitions)
    app.on_partitions_assigned.connect(forget_partitions)

    @app.agent(topics.device_topic, name="reconcile_firmware")
    async def reconcile_firmware(stream: faust.StreamT) -> None:
        # subscribes the group to the device topics; the transport hands their records to
        # the partition groups, never to this stream
        async for event in stream:
            raise RuntimeError(f"a device record reached faust's stream: {event!r}")

    @app.task
    async def follow_cpl() -> None:
        await processor.cpl.follow()

    watch = t.Watch(settings)

    @app.timer(t.Watch.SECONDS)
    async def check_topics() -> None:
        await watch.check()  # raises, and so stops the worker, once its topics are gone

    @app.agent(topics.cpl_topic, name="track_cpl")
    async def track_cpl(stream: faust.StreamT) -> None:
        gate = _Gate(app)
        async for events in _batches(stream, processor.settings):
            async with gate.lock:
                try:
                    await processor.on_cpl_events(gate.current(events))
                except Exception as exc:
                    # faust restarts an agent that raised, and commits the CPL messages it
                    # acks next past one whose dead letter was never sent (a gap of one at
                    # the head passes its check): nothing more may commit
                    gate.fail(exc)
                    raise

    return dict.fromkeys(topics.device_topic.topics, route)


def buffer_limit(settings: Settings) -> int:
    """Records buffered per partition before it is paused (its group waits on another)."""
    return 2 * settings.batch_size


def _batches(stream: faust.StreamT, settings: Settings) -> AsyncIterator[Sequence[EventT]]:
    """Batches of events, none acked: the agent acks each event it has decided."""
    take = cast(faust.Stream, stream).noack_take  # StreamT does not declare it
    return cast(AsyncIterator[Sequence[EventT]], take(settings.batch_size, settings.batch_seconds))


class _Gate:
    """The consumer's batch lock and its test for events read before a rebalance
    (``streams.transport``)."""

    def __init__(self, app: faust.App) -> None:
        self.consumer = consumer = cast(Consumer, app.consumer)
        self.lock: asyncio.Lock = consumer.batch_lock
        self.is_current = consumer.is_current

    def current(self, events: Sequence[EventT]) -> list[EventT]:
        return [e for e in events if self.is_current(e)]

    def fail(self, exc: BaseException) -> None:
        """No commit passes a batch that failed halfway (``Consumer.failed``)."""
        self.consumer.failed = self.consumer.failed or exc

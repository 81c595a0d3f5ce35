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
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import faust
from faust.types import EventT

from schemas.codec import decode_input, dumps
from schemas.models import (
    CplEntry,
    CplRemoval,
    DeadLetter,
    Event,
    Source,
    StatusCorrection,
    device_key,
    source_id,
)
from streams import topics as t
from streams.core import Decision, Device, decide, rules
from streams.core.decide import Output, reject
from streams.cpl import CplReplica
from streams.emit import Emitter
from streams.errors import InvalidEvent
from streams.index import DevicesByFirmware
from streams.metrics import Metrics
from streams.order import Key, Ordering, PartitionGroup, Step
from streams.settings import Settings
from streams.tables import (
    RecentRecords,
    Tables,
    table_persisted,
    table_read,
    table_write,
    taken_key,
)
from streams.transport import BatchRoute

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024


class Incoming(Protocol):
    """What is read of an input message: faust's Message and aiokafka's ConsumerRecord both."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Processor:
    """The thin shell around :func:`streams.core.decide` shared by the agents."""

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
        if (persisted := table_persisted(tables.device_to_record)) is not None:
            emitter.on_sent[self.changelog_name] = persisted
        self.metrics = Metrics()
        self.devices_by_firmware = DevicesByFirmware()
        self.recent = RecentRecords(settings.record_cache_size)
        self.cpl = CplReplica(settings, MAX_MESSAGE_BYTES)
        self.cpl_name = settings.topic(t.CPL)

    async def on_device_fetch(self, groups: Sequence[tuple[PartitionGroup, Sequence[Step]]]
                              ) -> None:
        """What the partition groups let be decided now, each group's steps in order (the
        caller holds the batch lock); their outputs go out together."""
        for group, steps in groups:
            for step in steps:
                if step.topic == self.cpl_name:
                    await self.on_cpl_step(group, step)
                else:
                    self.on_device_message(step.item, group.cpl)
            self.save_taken(group)
        await self.emitter.flush()

    def on_device_message(self, message: Incoming, cpl: Mapping[str, Any]) -> None:
        kind = self.topics.kind_of[message.topic]
        self.metrics.messages_in[kind] += 1
        try:
            event = decode_input(kind, message.key, message.value, MAX_MESSAGE_BYTES)
        except InvalidEvent as exc:
            self.dead_letter(message, kind, exc)
            return
        self.decide_one(message, kind, event, cpl)

    async def on_cpl_step(self, group: PartitionGroup, step: Step) -> None:
        """A CPL message at its place in a group's order: a removal suspends the group's
        devices it covers, unless the group had applied it before a restart."""
        group.apply_cpl(step)
        entry = step.item.entry
        if entry.status != "Removed" or step.known:
            return
        _, _, partition, offset = step.key
        source = Source(topic=t.CPL, partition=partition, offset=offset, id=entry.key)
        await self.suspend_partition(CplRemoval(entry=entry, source=source), group.partition,
                                     group.cpl)
        self.metrics.outcomes[(t.CPL, "removal-applied")] += 1

    def save_taken(self, group: PartitionGroup) -> None:
        """Where the group has got to, in the table and its changelog with the records."""
        if group.taken is None:
            return
        key = taken_key(group.partition)
        value = {"partition": group.partition, "taken": list(group.taken)}
        raw = dumps(value)
        table_write(self.tables.device_to_record, key, group.partition, value, raw)
        self.emitter.add_change(group.partition, key.encode(), raw)

    def taken(self, partition: int) -> Key | None:
        """Where the group of ``partition`` had got to, from the table (None: a new group)."""
        value = table_read(self.tables.device_to_record, taken_key(partition), partition)
        return None if value is None else cast(Key, tuple(value["taken"]))

    def decide_one(self, message: Incoming, kind: str, event: Event,
                   cpl: Mapping[str, Any]) -> None:
        key = device_key(event)
        source = Source(
            topic=kind,
            partition=message.partition,
            offset=message.offset,
            id=source_id(event),
        )
        try:
            record = self.read(key, message.partition)
            decision = decide(record, event, cpl, self.policy, source, _now())
        except Exception as exc:  # a bug must not stop the worker: keep the message
            log.exception("no decision for %s[%d]@%d", message.topic, message.partition,
                          message.offset)
            self.dead_letter(message, kind, InvalidEvent(f"internal error: {exc!r}"))
            return
        self.apply(decision, key, message.partition, record)
        self.metrics.outcomes[(kind, decision.outcome)] += 1

    def read(self, key: str, partition: int, recent: bool = True) -> Device | None:
        """A device's record: from the recent ones, else from the table (and kept among the
        recent ones, unless ``recent`` is False)."""
        record = self.recent.get(partition, key)
        if record is None and (stored := table_read(self.tables.device_to_record, key,
                                                    partition)) is not None:
            record = Device.from_dict(stored)
            if recent:
                self.recent.put(partition, key, record)
        return record

    def apply(self, decision: Decision, key: str, partition: int, before: Device | None,
              recent: bool = True) -> None:
        """``recent=False`` for the devices of a mass change (a CPL removal), which would
        otherwise push every recently decided device out of the recent records."""
        if (record := decision.record) is not None:
            value = record.to_dict(partition)
            raw = dumps(value)
            table_write(self.tables.device_to_record, key, partition, value, raw)
            if recent:
                self.recent.put(partition, key, record)
            else:
                self.recent.discard(partition, key)
            self.emitter.add_change(partition, key.encode(), raw)
            self.devices_by_firmware.on_write(partition, key, before, record)
        self.emit(decision.outputs, partition)

    def emit(self, outputs: tuple[Output, ...] | list[Output], partition: int,
             emitter: Emitter | None = None) -> None:
        """To the partition of the input that caused them (``streams/emit.py``)."""
        emitter = emitter or self.emitter
        for name, key, payload in outputs:
            emitter.add(self.output_names[name], partition, key.encode(), dumps(payload))
            self.metrics.messages_out[name] += 1
            if isinstance(payload, StatusCorrection):
                self.metrics.corrections[payload.cause] += 1

    async def suspend_partition(self, removal: CplRemoval, partition: int,
                                cpl: Mapping[str, Any]) -> None:
        """Suspend this partition's devices that the removed CPL entry covered."""
        entry = removal.entry
        table = self.tables.device_to_record
        if not self.devices_by_firmware.built:
            await self.devices_by_firmware.build(table.items())
        now = _now()
        for device_id in self.devices_by_firmware.take(partition, entry.key):
            record = self.read(device_id, partition, recent=False)
            if record is None or record.firmware_key != entry.key:
                continue  # moved on since it was indexed
            if not rules.removal_can_suspend(record.status, record.device_type):
                continue
            decision = decide(record, removal, cpl, self.policy, removal.source, now)
            self.apply(decision, device_id, partition, record, recent=False)

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
        try:
            entry = decode_input(t.CPL, message.key, message.value, MAX_MESSAGE_BYTES)
        except InvalidEvent as exc:
            self.dead_letter(message, t.CPL, exc)
            return
        assert isinstance(entry, CplEntry)
        self.metrics.outcomes[(t.CPL, f"cpl:{entry.status}")] += 1

    def dead_letter(self, message: Incoming, kind: str, error: InvalidEvent) -> None:
        log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition,
                    message.offset, error)
        key = message.key.decode(errors="replace") if message.key is not None else None
        letter = DeadLetter(
            topic=kind,
            partition=message.partition,
            offset=message.offset,
            key=key,
            value=_as_text(message.value),
            error=str(error),
            at=_now(),
        )
        outputs: list[Output] = [(t.DEADLETTER, key or "", letter)]
        if kind == t.REQUESTS and error.request_id:
            _, _, rejection = reject(error.request_id, error.device_id, error.sr,
                                     "invalid-request", self.policy, _now())
            # keyed like the input, so that under exactly_once it commits with the input's
            # partition (faust picks the transaction by the output's partition)
            outputs.append((t.REJECTIONS, key or error.request_id, rejection))
        self.emit(outputs, message.partition, self.cpl_emitter if kind == t.CPL else None)
        self.metrics.outcomes[(kind, "dead-lettered")] += 1
        self.metrics.dead_letters[kind] += 1


def _as_text(value: bytes | None) -> str:
    if value is None:
        return ""
    text = value[:MAX_MESSAGE_BYTES].decode("utf-8", errors="replace")
    return text if len(value) <= MAX_MESSAGE_BYTES else text + f"... ({len(value)} bytes)"


def _now() -> datetime:
    return datetime.now(UTC)


def register(app: faust.App, processor: Processor) -> None:
    topics, settings = processor.topics, processor.settings
    # read by streams.transport.Consumer when faust makes it: the device topics' records go
    # into the partition groups, and from there to the processor in time order
    ordering = Ordering(topics.device_topic.topics, processor.cpl_name, processor.cpl.timeline,
                        settings.max_task_idle, processor.taken, 2 * settings.batch_size)
    route = BatchRoute(processor.on_device_fetch, processor.cpl.ready, ordering)
    app.batch_routes = dict.fromkeys(topics.device_topic.topics, route)  # type: ignore[attr-defined]

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
        _Gate(app, processor.emitter)  # the commits send, check and hold what it holds
        async for event in stream:
            raise RuntimeError(f"a device record reached faust's stream: {event!r}")

    @app.task
    async def follow_cpl() -> None:
        await processor.cpl.follow()

    @app.agent(topics.cpl_topic, name="track_cpl")
    async def track_cpl(stream: faust.StreamT) -> None:
        gate = _Gate(app, processor.cpl_emitter)
        async for events in _batches(stream, processor.settings):
            async with gate.lock:
                await processor.on_cpl_events(gate.current(events))


def _batches(stream: faust.StreamT, settings: Settings) -> AsyncIterator[Sequence[EventT]]:
    """Batches of events, none acked: the agent acks each event it has decided."""
    take = cast(faust.Stream, stream).noack_take  # StreamT does not declare it
    return cast(AsyncIterator[Sequence[EventT]], take(settings.batch_size, settings.batch_seconds))


class _Gate:
    """The consumer's batch lock and its test for events read before a rebalance
    (``streams.transport``); unit tests on ``memory://`` have neither."""

    def __init__(self, app: faust.App, emitter: Emitter) -> None:
        consumer = app.consumer
        self.lock: asyncio.Lock = getattr(consumer, "batch_lock", None) or asyncio.Lock()
        self.is_current = getattr(consumer, "is_current", lambda event: True)
        if (add_outputs := getattr(consumer, "add_outputs", None)) is not None:
            add_outputs(emitter)  # commits send, check and hold what the emitter holds

    def current(self, events: Sequence[EventT]) -> list[EventT]:
        return [e for e in events if self.is_current(e)]

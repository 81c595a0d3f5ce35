"""The agents: decode, call the rule, write the record, emit. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.types import Message

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
from streams.core import Decision, Device, decide
from streams.core.decide import Output, reject
from streams.errors import InvalidEvent
from streams.index import DevicesByFirmware, firmware_key
from streams.metrics import Metrics
from streams.settings import Settings
from streams.tables import Tables

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024


class Processor:
    """The thin shell around :func:`streams.core.decide` shared by the agents."""

    def __init__(self, settings: Settings, topics: t.Topics, tables: Tables) -> None:
        self.settings = settings
        self.policy = settings.policy
        self.topics = topics
        self.tables = tables
        self.metrics = Metrics()
        self.producer: AIOKafkaProducer | None = None
        self.devices_by_firmware = DevicesByFirmware()

    async def on_device_message(self, message: Message) -> None:
        kind = self.topics.kind_of[message.topic]
        self.metrics.messages_in[kind] += 1
        try:
            event = decode_input(kind, message.key, message.value, MAX_MESSAGE_BYTES)
        except InvalidEvent as exc:
            await self.dead_letter(message, kind, exc)
            return
        if isinstance(event, CplRemoval):
            await self.suspend_partition(event, message.partition)
            self.metrics.outcomes[(kind, "broadcast")] += 1
            return
        await self.decide_one(message, kind, event)

    async def decide_one(self, message: Message, kind: str, event: Event) -> None:
        key = device_key(event)
        source = Source(
            topic=kind,
            partition=message.partition,
            offset=message.offset,
            id=source_id(event),
        )
        try:
            stored = self.tables.device_to_record.get(key)
            record = Device.from_dict(stored) if stored else None
            decision = decide(
                record, event, self.tables.cpl_key_to_entry, self.policy, source, _now()
            )
        except Exception as exc:  # a bug must not stop the worker: keep the message
            log.exception("no decision for %s[%d]@%d", message.topic, message.partition,
                          message.offset)
            await self.dead_letter(message, kind, InvalidEvent(f"internal error: {exc!r}"))
            return
        await self.apply(decision, key, message.partition, stored)
        self.metrics.outcomes[(kind, decision.outcome)] += 1

    async def apply(
        self, decision: Decision, key: str, partition: int, before: dict[str, Any] | None
    ) -> None:
        if decision.record is not None:
            value = decision.record.to_dict(partition)
            self.tables.device_to_record[key] = value
            if before is None or firmware_key(before) != firmware_key(value):
                self.devices_by_firmware.add(partition, key, value)
        await self.emit(decision.outputs)

    async def emit(self, outputs: tuple[Output, ...] | list[Output]) -> None:
        for name, key, payload in outputs:
            await self.topics.outputs[name].send(key=key, value=payload)
            self.metrics.messages_out[name] += 1
            if isinstance(payload, StatusCorrection):
                self.metrics.corrections[payload.cause] += 1

    async def suspend_partition(self, removal: CplRemoval, partition: int) -> None:
        """Suspend this partition's devices that the removed CPL entry covered."""
        entry = removal.entry
        table = self.tables.device_to_record
        if not self.devices_by_firmware.built:
            await self.devices_by_firmware.build(table.items())
        now = _now()
        for device_id in self.devices_by_firmware.candidates(partition, entry.key):
            value = table.get(device_id)
            if value is None or value["partition"] != partition or firmware_key(value) != entry.key:
                continue  # moved on since it was indexed
            decision = decide(Device.from_dict(value), removal, self.tables.cpl_key_to_entry,
                              self.policy, removal.source, now)
            await self.apply(decision, device_id, partition, value)

    async def on_cpl_message(self, message: Message) -> None:
        self.metrics.messages_in[t.CPL] += 1
        try:
            entry = decode_input(t.CPL, message.key, message.value, MAX_MESSAGE_BYTES)
        except InvalidEvent as exc:
            await self.dead_letter(message, t.CPL, exc)
            return
        assert isinstance(entry, CplEntry)
        self.tables.cpl_key_to_entry[entry.key] = entry.model_dump(mode="json")
        if entry.status == "Removed":
            await self.broadcast_removal(message, entry)
        self.metrics.outcomes[(t.CPL, f"cpl:{entry.status}")] += 1

    async def broadcast_removal(self, message: Message, entry: CplEntry) -> None:
        """One control message per device-stream partition: each owner suspends its own."""
        source = Source(topic=t.CPL, partition=message.partition,
                        offset=message.offset, id=entry.key)
        removal = dumps(CplRemoval(entry=entry, source=source))
        producer = await self._control_producer()
        sent = [
            await producer.send(self.topics.control_name, removal, key=entry.key.encode(),
                                partition=partition)
            for partition in range(self.settings.partitions)
        ]
        await asyncio.gather(*sent)  # on the broker before this CPL message counts as done

    async def _control_producer(self) -> AIOKafkaProducer:
        # Not faust's producer: under exactly_once faust puts a message for partition p in
        # the transaction of input partition p, which only commits when p has input of its
        # own; a broadcast would sit invisible in open transactions. A removal applied twice
        # changes nothing, so at-least-once delivery is enough here.
        if self.producer is None:
            self.producer = AIOKafkaProducer(acks="all", **self.settings.kafka_client_options())
            await self.producer.start()
        return self.producer

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def dead_letter(self, message: Message, kind: str, error: InvalidEvent) -> None:
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
            _, _, rejection = reject(error.request_id, None, None, "invalid-request",
                                     self.policy, _now())
            # keyed like the input, so that under exactly_once it commits with the input's
            # partition (faust picks the transaction by the output's partition)
            outputs.append((t.REJECTIONS, key or error.request_id, rejection))
        await self.emit(outputs)
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
    topics = processor.topics

    def forget_index(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        processor.devices_by_firmware.clear()  # the partitions it covered may have moved

    app.on_partitions_revoked.connect(forget_index)
    app.on_partitions_assigned.connect(forget_index)

    @app.agent(topics.device_topic, name="reconcile_firmware")
    async def reconcile_firmware(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await processor.on_device_message(event.message)

    @app.agent(topics.cpl_topic, name="track_cpl")
    async def track_cpl(stream: faust.StreamT) -> None:
        try:
            async for event in stream.events():
                await processor.on_cpl_message(event.message)
        finally:
            await processor.close()


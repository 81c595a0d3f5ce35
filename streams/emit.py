"""What a batch sends: outputs and the table's changelog records, one Kafka batch per partition.

faust sends every message through its producer buffer and a chain of coroutines: about half of
what a faust pass-through costs (``bench/faust_passthrough.py`` against the same with batches).
An agent that decides a batch can instead give aiokafka one record batch per topic partition.

Every record goes to the partition of the input event that caused it: the device's partition,
where its record's changelog lives too. Under ``exactly_once`` the batch goes through faust's
transactional producer for that input partition, so it commits with the input's offset; under
``at_least_once`` through faust's producer, which a commit flushes before it commits offsets.

Outputs go out with their batch, except while ``exactly_once`` transactions commit: then
they wait in :attr:`Emitter.pending` until the commit has begun the next transactions
(``streams/transport.py``). Changelog records wait for the next commit
(:meth:`Emitter.take_changes`, called by ``streams.transport.Consumer.commit``), the latest
per device only: a device written many times between two commits costs one record. Under
``exactly_once`` they join the transaction that commits their offsets. Under
``at_least_once`` they follow the outputs once those are on the broker: a crash before the
commit decides the batch again from the old records and sends its outputs again (at least
once), where the other order could find the new records and send nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka import AIOKafkaProducer, TopicPartition

from streams import engine
from streams.errors import DeliveryFailed

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes, int | None, Headers | None]  # key, value, timestamp, headers
Sent = Callable[[str, int, int], None]  # topic, partition, offset of its last record


class Emitter:
    def __init__(self, app: faust.App, input_topic: str, exactly_once: bool,
                 changelog: str | None = None) -> None:
        self.app = app
        self.input_topic = input_topic  # the transactions are those of its partitions
        self.exactly_once = exactly_once
        self.changelog = changelog
        # by (topic, partition, the input partition whose transaction it goes with)
        self.pending: defaultdict[tuple[str, int, int], list[Record]] = defaultdict(list)
        self.changes: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)  # the latest
        self.on_sent: dict[str, Sent] = {}  # by topic: told the offset each batch ended at
        self.failed: list[str] = []  # batches the producer gave up on, since the last check
        self.unsettled: set[asyncio.Future[Any]] = set()  # sent, not yet answered
        self.used: set[str] = set()  # transactions sent to since the last commit took them
        # True while the outputs must wait: set by the agents to the consumer's test
        self.holding: Callable[[], bool] = _never
        # timestamps (ms) of the inputs decided since the last flush, and who is told once
        # their outputs are handed to the producer (the decision latency, streams/metrics.py)
        self.inputs: list[int | None] = []
        self.on_flushed: Callable[[list[int | None]], None] = _ignore
        # awaited before outputs leave: raises if the worker no longer owns its partitions
        # (at_least_once, streams/membership.py)
        self.before_send: Callable[[], Awaitable[None]] = _nothing

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        self.pending[(topic, partition, partition)].append((key, value, None, None))

    def forward(self, topic: str, partition: int, via: int, key: bytes | None, value: bytes,
                timestamp: int | None, headers: Headers) -> None:
        """A record to another partition than its input's (``via``), with whose transaction
        it commits under exactly_once (``streams/repartition.py``)."""
        self.pending[(topic, partition, via)].append((key, value, timestamp, headers))

    def add_change(self, partition: int, key: bytes, value: bytes) -> None:
        # held until the commit: an exact copy, since orjson's bytes keep their whole working
        # buffer (about 8 KiB each, whatever the length)
        self.changes[partition][key] = bytes(memoryview(value))

    async def flush(self) -> None:
        """Send the outputs collected since the last call, unless ``holding`` says a
        transaction is committing (they then go with the next call)."""
        if self.holding():
            return
        if self.pending:
            await self.before_send()
        pending, self.pending = self.pending, defaultdict(list)
        inputs, self.inputs = self.inputs, []
        await self._send_all(pending)
        self.on_flushed(inputs)

    def take_changes(self) -> Callable[[], Awaitable[None]] | None:
        """What sends the changelog records collected since the last commit, to be called once
        the outputs of their events are on the broker (see the docstring); None if none."""
        changes, self.changes = self.changes, defaultdict(dict)
        changelog = self.changelog
        if not changes or changelog is None:
            return None
        return lambda: self._send_all(
            {(changelog, p, p): [(k, v, None, None) for k, v in c.items()]
             for p, c in changes.items()})

    def take_used(self) -> set[str]:
        """The transactional IDs sent to since the last call (exactly_once)."""
        used, self.used = self.used, set()
        return used

    async def _send_all(self, pending: dict[tuple[str, int, int], list[Record]]) -> None:
        for (topic, partition, via), records in pending.items():
            producer = self._producer(via)
            while records:
                records = await self._send(producer, topic, partition, records)

    async def _send(self, producer: AIOKafkaProducer, topic: str, partition: int,
                    records: list[Record]) -> list[Record]:
        """Send as many records as fit in one batch; return the rest. They join the batch the
        producer holds for the partition while a request is in flight, as aiokafka's
        ``send`` does: waiting for that batch to leave stalled deciding whenever the broker
        was slow, and sent it more and smaller batches, which slowed it further."""
        tp = TopicPartition(topic, partition)
        if (queued := engine.queued_batch(producer, tp)) is not None:
            builder, delivery = queued
            start = builder.record_count()
            if count := _fill(builder, records):
                self._track(asyncio.shield(delivery), topic, partition, start, count)
                return records[count:]
        batch = producer.create_batch()
        if count := _fill(batch, records):
            future = await producer.send_batch(batch, topic, partition=partition)
        else:  # one record larger than a batch: on its own
            key, value, timestamp, headers = records[0]
            future = await producer.send(topic, value, key=key, partition=partition,
                                         timestamp_ms=timestamp, headers=headers)
            count = 1
        self._track(future, topic, partition, 0, count)
        return records[count:]

    def _track(self, future: Any, topic: str, partition: int, start: int, count: int) -> None:
        """Until the broker answers: ``count`` records of a batch, from its ``start``-th."""
        self.unsettled.add(future)
        future.add_done_callback(lambda f: self._delivered(f, topic, partition, count, start))

    def _delivered(self, future: Any, topic: str, partition: int, count: int,
                   start: int = 0) -> None:
        self.unsettled.discard(future)
        exc = asyncio.CancelledError() if future.cancelled() else future.exception()
        if exc is not None:
            log.error("%d records to %s[%d] were not delivered: %r", count, topic, partition, exc)
            self.failed.append(f"{count} records to {topic}[{partition}]: {exc!r}")
        elif (sent := self.on_sent.get(topic)) is not None:
            sent(topic, partition, future.result().offset + start + count - 1)

    async def check_delivered(self) -> None:
        """Called before offsets are committed: waits until the broker has answered for
        every batch sent before this call (a producer's flush can return first), and raises
        if it refused one. An output the producer gave up on must stop the commit, or its
        input would count as done. Batches sent meanwhile are not waited for: under
        at_least_once the agents go on deciding during a commit, and a check that waited for
        their batches too ended only once deciding had stopped (``MAX_AHEAD``)."""
        if sent := list(self.unsettled):
            await asyncio.wait(sent)
            await asyncio.sleep(0)  # their callbacks, which record what failed
        if self.failed:
            failed, self.failed = self.failed, []
            raise DeliveryFailed(
                "outputs not delivered, so no input offset is committed past them: "
                + "; ".join(failed[:5]) + ". Fix what the broker names (a topic's "
                "max.message.bytes, its ACLs, its replicas) and start the worker again: it "
                "resumes from the last commit and sends them again")

    def _producer(self, partition: int) -> AIOKafkaProducer:
        producer = self.app.producer
        if not self.exactly_once:
            return engine.plain_producer(producer)
        transactional_id = transaction_of(self.app, self.input_topic, partition)
        self.used.add(transactional_id)
        return engine.transaction_producer(producer, transactional_id)


def transaction_of(app: faust.App, topic: str, partition: int) -> str:
    """The transactional ID whose transaction commits ``topic``'s ``partition`` (faust's
    format: the app, the topic's group, the partition)."""
    return f"{app.conf.id}-{app.assignor.group_for_topic(topic)}-{partition}"


_NO_HEADERS: Headers = []  # aiokafka wants a list; it only reads it


def _fill(batch: Any, records: list[Record]) -> int:
    """Append records to an aiokafka batch builder until one does not fit; how many went."""
    count = 0
    for key, value, timestamp, headers in records:
        if batch.append(key=key, value=value, timestamp=timestamp,
                        headers=headers or _NO_HEADERS) is None:
            break
        count += 1
    return count


async def _nothing() -> None:
    return None


def _never() -> bool:
    return False


def _ignore(inputs: list[int | None]) -> None:
    return None

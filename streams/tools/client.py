"""A small Kafka client over aiokafka for the CLI, the demo and the tests: produce, wait until
a consumer group has caught up, and read a topic to its end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams import topics as t
from streams.backends import is_device
from streams.errors import NotCaughtUp
from streams.settings import Settings
from streams.tables import changelog_topic

Received = tuple[str | None, Any, int, int]  # key, JSON value, partition, offset
READ_GAPS_UP_TO = 10_000  # offsets: a gap as small is read, it may hold transaction markers only


def offsets_behind(behind: dict[TopicPartition, tuple[int, int]]) -> int:
    """How many offsets :meth:`Kafka.behind`'s partitions are behind, all together."""
    return sum(end - start for start, end in behind.values())


class Kafka:
    """Produce, wait for a group's lag to reach zero, and read topics to their end."""

    def __init__(self, settings: Settings) -> None:
        options = settings.kafka_client_options()
        self.producer = AIOKafkaProducer(acks="all", **options)
        self.admin = AIOKafkaAdminClient(**options)
        # read_committed: under exactly_once, aborted transactions never count as output;
        # earliest: a read from an offset retention has removed goes on from what is left
        # (the default would skip to the end and read nothing)
        self.consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                         isolation_level="read_committed", **options)

    async def __aenter__(self) -> Kafka:
        try:
            await self.producer.start()
            await self.admin.start()
            await self.consumer.start()
        except BaseException:  # an unreachable broker: no "Unclosed" warnings after the error
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.admin.close()
        await self.consumer.stop()

    async def send(self, topic: str, key: str | None, value: Any) -> None:
        raw = value.encode() if isinstance(value, str) else json.dumps(value).encode()
        await self.producer.send_and_wait(topic, raw, key=key.encode() if key else None)

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        # only those that exist: describing one makes it on a broker that creates topics on
        # first use (with its defaults: one partition, not compacted)
        present = set(await self.admin.list_topics())
        if not (wanted := [name for name in topics if name in present]):
            return []
        described = await self.admin.describe_topics(wanted)
        return [TopicPartition(d["topic"], p["partition"])
                for d in described if d["error_code"] == 0 for p in d["partitions"]]

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        tps = await self.partitions(topics)
        return await self.consumer.end_offsets(tps) if tps else {}

    async def lag(self, group: str, topics: Iterable[str]) -> int:
        """Records the group has not yet committed past; when a gap holds nothing to read
        (only transaction markers, which take offsets too), it counts as caught up."""
        behind = await self.behind(group, topics)
        if (gap := offsets_behind(behind)) == 0 or gap > READ_GAPS_UP_TO:
            return gap  # caught up, or plainly behind
        return await self._readable_between(behind)

    async def behind(self, group: str, topics: Iterable[str]
                     ) -> dict[TopicPartition, tuple[int, int]]:
        """Each partition's committed offset and end, where the group has not committed up
        to the end (transaction markers count: nothing is read)."""
        # committed first: a transaction that commits in between (a group's last offsets with
        # the forwards they wrote) must not show its offsets without the end it moved
        committed = await self.admin.list_consumer_group_offsets(group)
        ends = await self.end_offsets(topics)
        behind: dict[TopicPartition, tuple[int, int]] = {}
        for tp, end in ends.items():
            meta = committed.get(tp)
            start = meta.offset if meta is not None and meta.offset >= 0 else 0
            if start < end:
                behind[tp] = (start, end)
        return behind

    async def _readable_between(self, spans: dict[TopicPartition, tuple[int, int]]) -> int:
        found = 0
        async for messages in self.read_range(spans):
            found += len(messages)
        return found

    async def wait_consumed(self, group: str, topics: Iterable[str], timeout: float = 30) -> None:
        names = list(topics)
        deadline = time.monotonic() + timeout
        while True:
            lag = await self.lag(group, names)
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise NotCaughtUp(f"group {group} still {lag} messages behind on {names}")
            await asyncio.sleep(0.05)

    async def read_range(
        self, spans: dict[TopicPartition, tuple[int, int]], max_records: int = 10_000
    ) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        """Batches of the committed records from each partition's start offset up to its end.

        A partition is done when the consumer's position reaches its end, not when a record
        at ``end - 1`` arrives: transaction markers take offsets but are never returned."""
        consumer = self.consumer
        remaining = {tp: end for tp, (start, end) in spans.items() if start < end}
        consumer.assign(list(remaining))
        for tp in remaining:
            consumer.seek(tp, spans[tp][0])
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=max_records)
            for tp, messages in batch.items():
                yield [m for m in messages if m.offset < remaining[tp]]
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]

    async def read_all(self, topic: str) -> list[Received]:
        """Every message now in ``topic``: (key, JSON value, partition, offset)."""
        ends = await self.end_offsets([topic])
        out: list[Received] = []
        async for messages in self.read_range({tp: (0, end) for tp, end in ends.items()}):
            out += [
                (m.key.decode() if m.key is not None else None, json.loads(m.value or b"null"),
                 m.partition, m.offset)
                for m in messages
            ]
        return out

    async def latest_by_key(self, topic: str) -> dict[str, Any]:
        latest: dict[str, Any] = {}
        for key, value, _, _ in sorted(await self.read_all(topic), key=lambda m: (m[2], m[3])):
            latest[str(key)] = value
        return latest


    async def smi(self, settings: Settings) -> dict[str, dict[str, Any]]:
        """Every device's record, as the SMI table's changelog holds it (the worker's own
        bookkeeping in that topic left out)."""
        records = await self.latest_by_key(changelog_topic(settings))
        return {k: v for k, v in records.items() if is_device(k) and v is not None}


def input_topics(settings: Settings) -> list[str]:
    """Every topic the worker's group consumes."""
    return [settings.topic(name) for name in t.INPUTS] + [t.repartition_topic(settings)]

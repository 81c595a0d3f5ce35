"""A small Kafka client over aiokafka for the CLI, the demo and the tests: produce, wait until
a consumer group has caught up, and read a topic to its end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.codec import CONTROL
from streams import topics as t
from streams.settings import Settings

Received = tuple[str | None, Any, int, int]  # key, JSON value, partition, offset


class Kafka:
    """Produce, wait for a group's lag to reach zero, and read topics to their end."""

    def __init__(self, settings: Settings) -> None:
        options = settings.kafka_client_options()
        self.producer = AIOKafkaProducer(acks="all", **options)
        self.admin = AIOKafkaAdminClient(**options)
        # read_committed: under exactly_once, aborted transactions never count as output
        self.consumer = AIOKafkaConsumer(enable_auto_commit=False,
                                         isolation_level="read_committed", **options)

    async def __aenter__(self) -> Kafka:
        await self.producer.start()
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.admin.close()
        await self.consumer.stop()

    async def send(self, topic: str, key: str | None, value: Any) -> None:
        raw = value.encode() if isinstance(value, str) else json.dumps(value).encode()
        await self.producer.send_and_wait(topic, raw, key=key.encode() if key else None)

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        described = await self.admin.describe_topics(list(topics))
        tps = [
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if d["error_code"] == 0
            for p in d["partitions"]
        ]
        return await self.consumer.end_offsets(tps) if tps else {}

    async def lag(self, group: str, topics: Iterable[str]) -> int:
        ends = await self.end_offsets(topics)
        committed = await self.admin.list_consumer_group_offsets(group)
        total = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            total += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return total

    async def wait_consumed(self, group: str, topics: Iterable[str], timeout: float = 30) -> None:
        names = list(topics)
        deadline = time.monotonic() + timeout
        while True:
            lag = await self.lag(group, names)
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} still {lag} messages behind on {names}")
            await asyncio.sleep(0.05)

    async def read_all(self, topic: str) -> list[Received]:
        """Every message now in ``topic``: (key, JSON value, partition, offset)."""
        ends = {tp: end for tp, end in (await self.end_offsets([topic])).items() if end > 0}
        if not ends:
            return []
        self.consumer.assign(list(ends))
        for tp in ends:
            self.consumer.seek(tp, 0)
        out: list[Received] = []
        remaining = dict(ends)
        while remaining:
            batch = await self.consumer.getmany(*remaining, timeout_ms=2000)
            for tp, messages in batch.items():
                for m in messages:
                    key = m.key.decode() if m.key is not None else None
                    out.append((key, json.loads(m.value), tp.partition, m.offset))
                    if m.offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
        return out

    async def latest_by_key(self, topic: str) -> dict[str, Any]:
        latest: dict[str, Any] = {}
        for key, value, _, _ in sorted(await self.read_all(topic), key=lambda m: (m[2], m[3])):
            latest[str(key)] = value
        return latest


def input_topics(settings: Settings) -> list[str]:
    """Every topic the worker's group consumes (the inputs and the internal control topic)."""
    return [settings.topic(name) for name in (*t.INPUTS, CONTROL)]

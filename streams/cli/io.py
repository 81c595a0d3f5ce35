"""``smi produce`` and ``smi tail``: JSON lines in, readable lines out."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaProducer

from schemas.codec import decode_input
from schemas.models import INPUT_MODELS, device_key
from streams.client import Kafka
from streams.decider import MAX_MESSAGE_BYTES
from streams.errors import ConfigError, InvalidEvent
from streams.settings import Settings
from streams.topics import ensure

MAX_BYTES = MAX_MESSAGE_BYTES  # the worker's own limit


def validated(topic: str, lines: Iterable[str]) -> Iterator[tuple[int, bytes | None, bytes, str]]:
    """(line number, key, value, error) per non-empty line; error is empty when it is valid."""
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        value = text.encode()
        try:
            event = decode_input(topic, None, value, MAX_BYTES)
        except InvalidEvent as exc:
            yield number, None, value, str(exc)
            continue
        yield number, device_key(event).encode(), value, ""


async def produce(settings: Settings, topic: str, source: IO[str], err: IO[str]) -> tuple[int, int]:
    """Send the valid lines of ``source`` to ``topic``; return (sent, refused)."""
    if topic not in INPUT_MODELS:
        raise ConfigError(f"smi produce takes an input topic: {', '.join(INPUT_MODELS)}")
    await ensure(settings)  # brokers that make no topics on first use would refuse the sends
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_client_options())
    await producer.start()
    sent = refused = 0
    try:
        for number, key, value, error in validated(topic, source):
            if error:
                refused += 1
                print(f"line {number}: refused: {error}", file=err)
                continue
            await producer.send(settings.topic(topic), value, key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent, refused


def readable(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> str:
    """One line a person can scan: where it is, its key, and its fields."""
    try:
        payload: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        payload = value.decode(errors="replace")
    where = f"{topic}[{partition}]@{offset}"
    head = key.decode(errors="replace") if key else "-"
    if not isinstance(payload, dict):
        return f"{where} {head} {payload!r}"
    fields = " ".join(f"{k}={_short(v)}" for k, v in payload.items() if v is not None)
    return f"{where} {head} {fields}"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if len(text) <= 24 else text[:10] + "…" + text[-6:]


async def tail(
    settings: Settings, topic: str, raw: bool, from_beginning: bool, limit: int | None,
    idle_exit: float | None, out: IO[str] = sys.stdout,
) -> int:
    """Follow ``topic`` (every partition, no consumer group) and print each message."""
    name = settings.topic(topic)
    shown = 0
    async with Kafka(settings) as kafka:
        ends = await kafka.end_offsets([name])
        if not ends:
            raise ConfigError(f"there is no topic {name} on {settings.broker}")
        consumer = kafka.consumer
        consumer.assign(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, 0 if from_beginning else end)
        idle = 0.0
        while limit is None or shown < limit:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            idle = 0.0 if batch else idle + 0.5
            if idle_exit is not None and idle >= idle_exit:
                break
            for tp, messages in batch.items():
                for m in messages:
                    value = m.value or b""
                    line = value.decode(errors="replace") if raw else readable(
                        topic, tp.partition, m.offset, m.key, value)
                    print(line, file=out, flush=True)
                    shown += 1
    return shown

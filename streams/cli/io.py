"""``smi produce`` and ``smi tail``: JSON lines in, readable lines out."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, Literal

import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas.codec import decode_input
from schemas.models import INPUT_MODELS, device_key
from streams.decider import MAX_MESSAGE_BYTES
from streams.errors import ConfigError, InvalidEvent
from streams.settings import Settings
from streams.tools.client import Kafka
from streams.topics import ensure

MAX_BYTES = MAX_MESSAGE_BYTES  # the worker's own limit

Form = Literal["readable", "raw", "json"]


def validated(topic: str, lines: Iterable[bytes]) -> Iterator[tuple[int, bytes | None, bytes, str]]:
    """(line number, key, value, error) per non-empty line; error is empty when it is valid.
    The lines are bytes, as sent: one that is not UTF-8 is refused like any other bad line."""
    for number, line in enumerate(lines, 1):
        value = line.strip()
        if not value:
            continue
        try:
            value.decode()
        except UnicodeDecodeError as exc:
            yield number, None, value, f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})"
            continue
        try:
            event = decode_input(topic, None, value, MAX_BYTES)
        except InvalidEvent as exc:
            yield number, None, value, str(exc)
            continue
        yield number, device_key(event).encode(), value, ""


async def produce(
    settings: Settings, topic: str, source: IO[bytes], err: IO[str], create: bool = False,
) -> tuple[int, int]:
    """Send the valid lines of ``source`` to ``topic``; return (sent, refused).

    ``create``: make the contract's missing topics first. Without it a missing topic is an
    error, as with Kafka's own tools: a typo in a prefix must not make topics."""
    if topic not in INPUT_MODELS:
        raise ConfigError(f"smi produce takes an input topic: {', '.join(INPUT_MODELS)}")
    if create:
        await ensure(settings)
    else:
        await _exists(settings, settings.topic(topic))
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_client_options())
    await producer.start()
    refused = 0
    delivered: list[tuple[int, asyncio.Future[Any]]] = []
    try:
        for number, key, value, error in validated(topic, source):
            if error:
                refused += 1
                print(f"line {number}: refused: {error}", file=err)
                continue
            delivered.append((number, await producer.send(settings.topic(topic), value,
                                                          key=key)))
        # the broker's answer to each: a flush waits for them, and raises none of their errors
        answers = await asyncio.gather(*(f for _, f in delivered), return_exceptions=True)
    finally:
        await producer.stop()
    failed = [(number, answer) for (number, _), answer in zip(delivered, answers, strict=True)
              if isinstance(answer, BaseException)]
    for number, answer in failed:
        print(f"line {number}: not delivered: {answer!r}", file=err)
    return len(delivered) - len(failed), refused + len(failed)


async def _exists(settings: Settings, name: str) -> None:
    async with Kafka(settings) as kafka:
        if not await kafka.end_offsets([name]):
            raise ConfigError(f"there is no topic {name} on {settings.broker}: create the "
                              "contract's topics with `smi topics` or `smi produce --create`")


def readable(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> str:
    """One line a person can scan: where it is, its key, and its fields."""
    try:
        payload: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        payload = value.decode(errors="replace")
    where = f"{topic}[{partition}]@{offset}"
    head = key.decode(errors="replace") if key else "-"
    if not isinstance(payload, dict):  # text that is not JSON quoted, other JSON as written
        shown = repr(payload) if isinstance(payload, str) else _short(payload)
        return f"{where} {head} {shown}".translate(_CONTROLS)
    fields = " ".join(f"{k}={_short(v)}" for k, v in payload.items() if v is not None)
    return f"{where} {head} {fields}".translate(_CONTROLS)


# any producer writes the topics: its control characters would drive the reader's terminal
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def _short(value: Any) -> str:
    # values whole: an ID cut short cannot be pasted into `smi device` or a search
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    return value if isinstance(value, str) else orjson.dumps(value).decode()  # true, not True


def envelope(partition: int, offset: int, timestamp: int, key: bytes | None,
             value: bytes | None) -> str:
    """One JSON object per message, for jq: the value parsed when it is JSON, else text."""
    try:
        payload: Any = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        payload = (value or b"").decode(errors="replace")
    return orjson.dumps({
        "key": key.decode(errors="replace") if key is not None else None,
        "partition": partition, "offset": offset, "timestamp": timestamp, "value": payload,
    }).decode()


def line(topic: str, form: Form, m: ConsumerRecord[bytes, bytes]) -> str:
    if form == "json":
        return envelope(m.partition, m.offset, m.timestamp, m.key, m.value)
    value = m.value or b""
    if form == "raw":
        return value.decode(errors="replace")
    return readable(topic, m.partition, m.offset, m.key, value)


async def tail(
    settings: Settings, topic: str, form: Form, from_beginning: bool, limit: int | None,
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
            wanted = 500 if limit is None else min(500, limit - shown)  # never past --max
            batch = await consumer.getmany(timeout_ms=500, max_records=wanted)
            idle = 0.0 if batch else idle + 0.5
            if idle_exit is not None and idle >= idle_exit:
                break
            for messages in batch.values():
                for m in messages:
                    print(line(topic, form, m), file=out, flush=True)
                    shown += 1
    return shown

"""Latency from input to output at a fixed offered rate.

Service requests and the rest of the mix, without CPL changes, are sent at ``rate`` events
per second for ``seconds``: a CPL removal is a bulk job, not live traffic (it suspends every
device on a firmware at once), and ``bench/run.py`` times it on its own. Every request has
exactly one answer (a device command or a rejection) carrying its request ID. The time from
the producer's ``send`` to the consumer seeing the answer is the latency: it includes both
clients' batching and, under exactly_once, the wait for the transaction to commit (the
answer is invisible to a read_committed consumer until then).

The load runs for :data:`WARMUP_SECONDS` before the measured ``seconds`` and those requests
are not counted: what is timed is a process that has met this load before. In the first
seconds the benchmark's own producer took 140 ms to get a request onto the broker (its
connections and the broker's code paths still cold), and the Kafka Streams peer, a fresh JVM,
answered in seconds while its code was still being compiled; the worker too answered its
first seconds of load slower than the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import cpu_seconds
from streams import topics as t
from streams.repartition import home_of
from streams.settings import Settings
from streams.tools.workload import Message, Workload

TICK = 0.01  # seconds between two bursts of the offered load
LOAD_TOPICS = (t.REQUESTS, t.RESPONSES, t.INVENTORY)  # the mix without CPL changes
# a tick's events by (topic, partition): key, value and the request ID of a service request
Placed = dict[tuple[str, int], list[tuple[bytes, bytes, str | None]]]
WARMUP_SECONDS = 15.0  # of load before the measured seconds, not counted
DRAIN_SECONDS = 120  # after the last send; answers later than that count as unanswered


class CpuWindow:
    """The CPU that processes ``pids`` (every thread) use between :meth:`start` and
    :meth:`stop`: what the answering processes spend on the timed load."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = pids
        self.started: tuple[float, float] | None = None
        self.used: tuple[float, float] | None = None  # CPU seconds, wall seconds

    def start(self) -> None:
        self.started = (self._cpu(), time.perf_counter())

    def stop(self) -> None:
        if self.started is not None and self.pids:
            cpu, wall = self.started
            self.used = (self._cpu() - cpu, time.perf_counter() - wall)

    def _cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def summary(self, events: int) -> dict[str, float]:
        """CPU per event offered in the window, and the cores it kept busy on average."""
        if self.used is None or not events:
            return {}
        cpu, wall = self.used
        return {"cpu_us_per_event": round(cpu / events * 1e6, 1),
                "cpu_cores": round(cpu / wall, 2)}


async def offer(settings: Settings, workload: Workload, rate: int, seconds: float,
                warmup: float = WARMUP_SECONDS, stamped: bool = True,
                pids: Sequence[int] = ()) -> dict[str, Any]:
    """The latency of each request's answer; with ``stamped`` also how long it took to reach
    the answering process's producer, read off the answer's record timestamp (the worker's
    are stamped as they are handed to its producer; Kafka Streams' carry their input's); and
    the CPU of processes ``pids`` while the timed load was sent."""
    consumer = AIOKafkaConsumer(
        settings.topic(t.COMMANDS), settings.topic(t.REJECTIONS),
        auto_offset_reset="latest", enable_auto_commit=False, group_id=None,
        isolation_level="read_committed", fetch_max_wait_ms=5,
        **settings.kafka_client_options())
    producer = AIOKafkaProducer(linger_ms=1, **settings.kafka_client_options())
    await consumer.start()
    await producer.start()
    await _positioned(consumer)
    for name in LOAD_TOPICS:
        # placing the load needs each topic's partitions, and a first send would otherwise
        # wait for them while it is timed
        await producer.partitions_for(settings.topic(name))
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    handed: dict[str, float] = {}
    window = CpuWindow(pids)
    try:
        receiving = asyncio.create_task(_receive(consumer, seen, handed))
        lag = await _send_paced(settings, producer, workload, rate, seconds, warmup, sent,
                                window.start)
        window.stop()
        deadline = time.monotonic() + DRAIN_SECONDS
        while len(seen.keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        receiving.cancel()
    finally:
        await producer.stop()
        await consumer.stop()
    return {**summary(sent, seen, rate, seconds, warmup, handed if stamped else None),
            "sender_lag_max_ms": round(lag * 1000, 1),
            **window.summary(round(rate * seconds))}


async def _positioned(consumer: AIOKafkaConsumer) -> None:
    """Wait for the assignment and the end offsets, so no answer is missed."""
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    for tp in consumer.assignment():
        await consumer.position(tp)


async def _send_paced(
    settings: Settings, producer: AIOKafkaProducer, workload: Workload, rate: int,
    seconds: float, warmup: float, sent: dict[str, float],
    on_timed: Callable[[], None] = lambda: None,
) -> float:
    """Every ``TICK``, the next ``rate * TICK`` events, a record batch per partition. The events
    are made and placed beforehand, so that the benchmark's own work while it measures is
    little more than sending: it shares the machine's two cores with the worker and broker.
    Returns how late the latest timed tick began: a request is timed from when it was sent,
    so a sender that fell behind would hide that much of the worker's latency. Calls
    ``on_timed`` as the first timed tick begins."""
    ticks = _ticks(settings, workload, rate, warmup + seconds)
    untimed = int(warmup / TICK)
    started = time.perf_counter()
    lag = 0.0
    for tick, batches in enumerate(ticks):
        if tick == untimed:
            on_timed()
        now = time.perf_counter()
        if tick >= untimed:
            lag = max(lag, now - (started + tick * TICK))
        for (topic, partition), records in batches.items():
            batch = producer.create_batch()
            for key, value, request_id in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    await producer.send_batch(batch, topic, partition=partition)
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                if request_id is not None and tick >= untimed:
                    sent[request_id] = now
            await producer.send_batch(batch, topic, partition=partition)
        delay = started + (tick + 1) * TICK - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return lag


def _ticks(settings: Settings, workload: Workload, rate: int, seconds: float) -> list[Placed]:
    """The load, tick by tick: each event on the partition the producer would give it, with
    its request ID if it is a service request."""
    per_tick = max(1, round(rate * TICK))
    events = workload.events(int(rate * seconds), cpl_changes=False)
    ticks: list[Placed] = []
    for _ in range(int(seconds / TICK)):
        placed: Placed = {}
        for m in _take(events, per_tick):
            topic = settings.topic(m.topic)
            # where the producer's default partitioner (murmur2, as Java's) puts the key
            partition = home_of(m.key.decode(), settings.partitions) if m.key else 0
            request_id = orjson.loads(m.value)["request_id"] if m.topic == t.REQUESTS else None
            placed.setdefault((topic, partition), []).append((m.key, m.value, request_id))
        ticks.append(placed)
    return ticks


def _take(events: Any, count: int) -> list[Message]:
    return [m for _, m in zip(range(count), events, strict=False)]


async def _receive(consumer: AIOKafkaConsumer, seen: dict[str, float],
                   handed: dict[str, float]) -> None:
    """When each answer is read, and (from its record timestamp, on the same clock as the
    sends) when it was handed to the producer that wrote it."""
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        now = time.perf_counter()
        # record timestamps are wall-clock milliseconds, the sends perf_counter seconds
        wall_ahead = time.time() - now
        for messages in batch.values():
            for m in messages:
                request_id = orjson.loads(m.value)["request_id"]
                seen.setdefault(request_id, now)
                handed.setdefault(request_id, m.timestamp / 1000 - wall_ahead)


def summary(sent: dict[str, float], seen: dict[str, float], rate: int, seconds: float,
            warmup: float = WARMUP_SECONDS, handed: dict[str, float] | None = None
            ) -> dict[str, Any]:
    latencies = sorted(seen[r] - sent[r] for r in sent if r in seen)
    offered = {"offered_per_second": rate, "seconds": seconds, "warmup_seconds": warmup,
               "requests": len(sent)}
    if not latencies:
        return {**offered, "answered": 0}
    return {
        **offered,
        "answered": len(latencies),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        **(_to_producer(sent, handed) if handed is not None else {}),
    }


def _to_producer(sent: dict[str, float], handed: dict[str, float]) -> dict[str, float]:
    """From each request's send to its answer handed to the worker's producer (the fetch and
    the decision), p50 and p99; the rest of its latency is the produce, the commit under
    exactly_once and the read."""
    ordered = sorted(max(handed[r] - sent[r], 0.0) for r in sent if r in handed)
    return {"to_producer_p50_ms": round(_percentile(ordered, 0.50) * 1000, 1),
            "to_producer_p99_ms": round(_percentile(ordered, 0.99) * 1000, 1)} if ordered else {}


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

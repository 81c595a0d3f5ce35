"""Counters kept by the agents and shown by ``/metrics`` (Prometheus text, through
prometheus_client) and ``/stats``."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4"  # what every Prometheus reads (text is UTF-8)
# seconds, from an input's timestamp to its outputs handed to the producer: a backlog after
# an outage is minutes old
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                  300.0, 1800.0)
COMMIT_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Buckets:
    """A histogram as plain counts: observed once per decided event, where
    prometheus_client's takes a lock each time."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append((_le(bound), total))
        return HistogramMetricFamily(name, documentation, buckets=cumulative,
                                     sum_value=self.sum)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics:
    """Plain counters: cheap enough to bump on every event."""

    def __init__(self) -> None:
        self.messages_in: Counter[str] = Counter()  # by contract topic
        self.messages_out: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (topic, outcome)
        self.dead_letters: Counter[str] = Counter()
        # sent on to the device's partition (streams/repartition.py): counted in, and
        # accounted for, where they are decided
        self.forwarded: Counter[str] = Counter()
        self.corrections: Counter[str] = Counter()  # by cause
        self.decision_latency = Buckets(LATENCY_BOUNDS)
        self.commit_seconds = Buckets(COMMIT_BOUNDS)

    def accounted(self) -> dict[str, dict[str, int]]:
        """Per input topic: processed, rejected, dead-lettered; they add up to messages in."""
        out: dict[str, dict[str, int]] = {}
        for (topic, outcome), n in self.outcomes.items():
            bucket = out.setdefault(topic, {"processed": 0, "rejected": 0, "dead_lettered": 0})
            if outcome.startswith("rejected:"):
                bucket["rejected"] += n
            elif outcome == "dead-lettered":
                bucket["dead_lettered"] += n
            else:
                bucket["processed"] += n
        return out

    def decided(self, timestamps_ms: Iterable[int | None], now: float) -> None:
        """Inputs whose outputs were just handed to the producer, by their record timestamps
        (milliseconds; ``now`` in seconds)."""
        observe = self.decision_latency.observe
        for ms in timestamps_ms:
            if ms is not None and ms > 0:
                observe(max(now - ms / 1000, 0.0))

    def families(self) -> Iterator[Metric]:
        """The counters and histograms, with their help."""
        yield _counter("smi_messages_in", "Input messages read, by contract topic",
                       ["topic"], self.messages_in)
        yield _counter("smi_messages_out", "Output messages sent, by contract topic",
                       ["topic"], self.messages_out)
        yield _counter("smi_outcomes", "What became of each input message, by topic",
                       ["topic", "outcome"], self.outcomes)
        yield _counter("smi_dead_letters", "Input messages dead-lettered, by topic",
                       ["topic"], self.dead_letters)
        yield _counter("smi_forwarded", "Records sent on to their device's partition, by topic",
                       ["topic"], self.forwarded)
        yield _counter("smi_corrections", "Status corrections emitted, by cause",
                       ["cause"], self.corrections)
        yield self.decision_latency.family(
            "smi_decision_latency_seconds",
            "From an input record's timestamp to its outputs handed to the producer: each "
            "device record, and each CPL removal once per partition group it applies to")
        yield self.commit_seconds.family(
            "smi_commit_duration_seconds",
            "How long a commit took: outputs and changelog flushed, offsets committed")


@dataclass
class Snapshot:
    """What ``/metrics`` reads at each scrape besides the counters."""

    devices_by_status: Mapping[str, int] = field(default_factory=dict)
    lag: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition)
    recent_records: int = 0
    recent_reads: Mapping[str, int] = field(default_factory=dict)  # hit, miss


def exposition(metrics: Metrics, snapshot: Snapshot) -> bytes:
    """Prometheus text: the worker's metrics, and the process's (CPU, memory, files, GC)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector([*metrics.families(), *_snapshot_families(snapshot)]))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return generate_latest(registry)


def _snapshot_families(snapshot: Snapshot) -> Iterator[Metric]:
    devices = sum(snapshot.devices_by_status.values())
    yield _gauge("smi_table_devices", "Devices in the partitions this worker owns", devices)
    yield _gauges("smi_devices", "Devices in the partitions this worker owns, by status",
                 ["status"], snapshot.devices_by_status)
    yield _gauge("smi_consumer_lag", "Input messages not yet committed, in the partitions "
                 "this worker owns", sum(snapshot.lag.values()))
    yield _gauges("smi_partition_lag", "Input messages not yet committed, per partition this "
                 "worker owns", ["topic", "partition"],
                 {(t, str(p)): n for (t, p), n in snapshot.lag.items()})
    yield _gauge("smi_recent_records", "Decoded records kept in front of the table",
                 snapshot.recent_records)
    yield _counter("smi_recent_record_reads", "Record reads, by whether the recent records "
                   "held it", ["result"], snapshot.recent_reads)


def _counter(name: str, documentation: str, labels: list[str],
             values: Mapping[Any, int]) -> Metric:
    """``values`` by label value, or by a tuple of them for several labels."""
    return _labelled(CounterMetricFamily(name, documentation, labels=labels), values)


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _gauges(name: str, documentation: str, labels: list[str],
            values: Mapping[Any, int]) -> Metric:
    return _labelled(GaugeMetricFamily(name, documentation, labels=labels), values)


def _labelled(family: Any, values: Mapping[Any, int]) -> Metric:
    for key, n in values.items():
        family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
    return cast(Metric, family)


class _Collector:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families

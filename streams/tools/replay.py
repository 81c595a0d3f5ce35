"""``smi replay``: rebuild the SMI from the input topics, from the beginning, under a policy.

The input topics are read from the real broker up to their current end and put in the order
each of the worker's partition groups decides in (``streams/order.py``): by partition time
(a record's timestamp, or the highest before it on its partition where that is higher), then
topic (CPL, inventory, requests, responses), partition and offset, each partition's
records of one home partition in their own order (:func:`in_order`). Each record goes
through the worker's own step (``streams/decider.py``) into a fresh, in-memory SMI, so the
same input and policy give the worker's corrections with the same IDs, every time. Several
policies are decided over one read.
"""

from __future__ import annotations

import heapq
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from schemas.codec import decode_input
from schemas.models import (
    CplEntry,
    Source,
    StatusCorrection,
    device_key,
    source_id,
)
from streams import topics as t
from streams.core import Device, Policy, rules
from streams.core.decide import Output
from streams.core.policy import POLICY_SWITCHES
from streams.decider import MAX_MESSAGE_BYTES, Decider
from streams.errors import ConfigError, InvalidEvent
from streams.repartition import Homes
from streams.settings import Settings
from streams.tools.client import Kafka
from streams.tools.progress import Progress


@dataclass(frozen=True, slots=True)
class Record:
    topic: str  # contract name
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass
class Outcome:
    """What one policy made of the input."""

    policy: Policy
    events: int = 0
    accounted: Counter[str] = field(default_factory=Counter)  # processed/rejected/dead_lettered
    outputs: Counter[str] = field(default_factory=Counter)
    corrections: list[StatusCorrection] = field(default_factory=list)
    smi: dict[str, Device] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            "events": self.events,
            "accounted": dict(self.accounted),
            "outputs": dict(self.outputs),
            "corrections_by_cause": dict(Counter(c.cause for c in self.corrections)),
            "devices_by_status": dict(Counter(d.status for d in self.smi.values())),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds) if self.seconds else None,
        }


async def read_inputs(settings: Settings, show_progress: bool = True) -> list[Record]:
    """Every input message now on the broker, in timestamp order (partition order kept)."""
    names = {settings.topic(n): n for n in t.INPUTS}
    async with Kafka(settings) as kafka:
        ends = await kafka.end_offsets(names)
        if not ends:  # a replay of nothing would look like a policy that changes nothing
            raise ConfigError(f"there is no input topic ({', '.join(names)}) on "
                              f"{settings.broker}: is SMI_TOPIC_PREFIX the one they have?")
        ends = {tp: end for tp, end in ends.items() if end > 0}
        progress = Progress("reading", sum(ends.values())) if show_progress else None
        per_partition = await _read(kafka, ends, names, progress)
    if progress:
        progress.close()
    return in_order([r for tp in sorted(per_partition) for r in per_partition[tp]],
                    settings.partitions)


async def refuse_cut(kafka: Kafka, names: list[str], because: str) -> None:
    """Raise when a partition of topics ``names`` no longer starts at offset 0 (retention or
    delete-records): a decision from the input alone needs all of it. ``because`` says what
    would go wrong."""
    starts = await kafka.consumer.beginning_offsets(await kafka.partitions(names))
    if cut := sorted(f"{tp.topic}[{tp.partition}]" for tp, start in starts.items() if start):
        raise ConfigError(f"{', '.join(cut[:5])} no longer start at offset 0 (retention or "
                          f"delete-records): {because}")


_RANK = {name: rank for rank, name in enumerate(t.INPUTS)}  # the CPL 0, as streams/order.py


def in_order(records: Iterable[Record], partitions: int) -> list[Record]:
    """``records`` (each partition's in offset order) in the order the worker's partition
    groups decide them, each with its timestamp raised to its partition time (the highest
    timestamp on its partition up to it, ``streams/order.py``). A group takes, of the records
    it holds for its devices, the one with the lowest key (time, topic, partition, offset) at
    the head of its queues: one per input partition of its own, one per partition that
    forwards it records, one per CPL partition. So each partition's records are split by
    their device's home partition, and the parts merged by their heads."""
    homes = Homes(partitions)
    parts: defaultdict[tuple[str, int, int], list[Record]] = defaultdict(list)
    for record in at_partition_time(records):
        home = record.partition if record.topic == t.CPL else home_of_record(record, homes)
        parts[(record.topic, record.partition, home)].append(record)
    return list(heapq.merge(*parts.values(), key=_key))


def at_partition_time(records: Iterable[Record]) -> Iterator[Record]:
    """Each record (each partition's in offset order), its timestamp raised to the highest
    on its partition before it, as a live partition group orders it."""
    times: dict[tuple[str, int], int] = {}
    for record in records:
        latest = times.get(where := (record.topic, record.partition), record.timestamp)
        if record.timestamp >= latest:
            times[where] = record.timestamp
            yield record
        else:  # a producer's clock went back: rare
            yield replace(record, timestamp=latest)


def _key(record: Record) -> tuple[int, int, int, int]:
    return (record.timestamp, _RANK[record.topic], record.partition, record.offset)


def home_of_record(record: Record, homes: Homes) -> int:
    """The partition of the device a record is about, as the worker finds it: its own for a
    record that is not valid. The payload's device ID is read first without validating: a
    record whose device lives where it is stays there, valid or not."""
    named = _named_device(record)
    if named is not None and homes(named) == record.partition:
        return record.partition
    try:
        event = decode_input(record.topic, record.key, record.value, MAX_MESSAGE_BYTES)
    except InvalidEvent:
        return record.partition
    return homes(device_key(event))


def _named_device(record: Record) -> str | None:
    """The device ID a device record's payload names (a response's ``gsme_id`` first, as
    :func:`schemas.models.device_key`), upper case; None if it names none as text."""
    try:
        payload = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    named = payload.get("gsme_id") if record.topic == t.RESPONSES else None
    named = named or payload.get("device_id")
    return named.upper() if isinstance(named, str) else None


async def _read(
    kafka: Kafka, ends: dict[TopicPartition, int], names: dict[str, str],
    progress: Progress | None,
) -> dict[TopicPartition, list[Record]]:
    out: dict[TopicPartition, list[Record]] = {tp: [] for tp in ends}
    async for messages in kafka.read_range({tp: (0, end) for tp, end in ends.items()}):
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            out[tp].append(Record(names[m.topic], m.partition, m.offset, m.timestamp, m.key,
                                  m.value))
        if progress:
            progress.advance(len(messages))
    return out


def run(records: Iterable[Record], policy: Policy, now: datetime | None = None) -> Outcome:
    """Decide every record in order into a fresh SMI, with the worker's decider."""
    outcome = Outcome(policy)
    stamp = now or datetime.now(UTC)
    decider = Decider(policy, _Smi(outcome.smi), _Counts(outcome), lambda: stamp, warn=False)
    cpl: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for record in records:
        outcome.events += 1
        if record.topic != t.CPL:
            decider.on_record(record, record.topic, cpl)
        elif (entry := decider.on_cpl(record)) is not None:
            cpl[entry.key] = entry.model_dump(mode="json")
            if entry.status == "Removed":
                source = Source(topic=t.CPL, partition=record.partition, offset=record.offset,
                                id=source_id(entry))
                decider.apply_removal(entry, source, ANY_PARTITION, cpl)
    outcome.seconds = time.perf_counter() - started
    return outcome


ANY_PARTITION = -1  # replay keeps one SMI, not one per partition


class _Smi:
    """Replay's record store (``streams.decider.RecordStore``): one dict for every device."""

    def __init__(self, smi: dict[str, Device]) -> None:
        self.smi = smi

    def read(self, partition: int, key: str, recent: bool = True) -> Device | None:
        return self.smi.get(key)

    def write(self, partition: int, key: str, before: Device | None, record: Device,
              recent: bool = True) -> None:
        self.smi[key] = record

    def covered(self, partition: int, entry: CplEntry) -> list[str]:
        return [k for k, r in self.smi.items() if rules.covered_by(entry, r)]


class _Counts:
    """Replay's outputs (``streams.decider.Outputs``): counted, corrections kept."""

    def __init__(self, outcome: Outcome) -> None:
        self.o = outcome

    def emit(self, outputs: Sequence[Output], partition: int) -> None:
        for name, _, payload in outputs:
            self.o.outputs[name] += 1
            if isinstance(payload, StatusCorrection):
                self.o.corrections.append(payload)

    def emit_dead_letter(self, outputs: Sequence[Output], partition: int, name: str) -> None:
        self.emit(outputs, partition)

    def outcome(self, name: str, outcome: str) -> None:
        if outcome == "dead-lettered":
            self.o.accounted["dead_lettered"] += 1
        else:
            rejected = outcome.startswith("rejected:")
            self.o.accounted["rejected" if rejected else "processed"] += 1


def write(outcomes: list[Outcome], out: Path) -> Path:
    """Per policy: a summary, the corrections and the SMI (JSON lines, a record a device, by
    device ID, without the clock readings in its history); and a comparison table."""
    out.mkdir(parents=True, exist_ok=True)
    for o in outcomes:
        name = o.policy.name
        (out / f"{name}.summary.json").write_text(json.dumps(o.summary(), indent=2) + "\n")
        with open(out / f"{name}.corrections.jsonl", "w") as f:
            for c in o.corrections:
                f.write(c.model_dump_json(exclude={"at"}) + "\n")
        with open(out / f"{name}.smi.jsonl", "w") as f:
            for key in sorted(o.smi):
                f.write(json.dumps(comparable(o.smi[key].to_dict(0))) + "\n")
    table = out / "compare.md"
    table.write_text(compare_table(outcomes))
    return table


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A table record without what differs between two runs over the same input: when each
    change was made (its history) and the partition it was kept on."""
    return {k: v for k, v in record.items() if k not in ("history", "partition")}


def compare_table(outcomes: list[Outcome]) -> str:
    summaries = [o.summary() for o in outcomes]
    causes = sorted({c for s in summaries for c in s["corrections_by_cause"]})
    statuses = sorted({st for s in summaries for st in s["devices_by_status"]})
    rows = [("events", [s["events"] for s in summaries])]
    rows += [(f"corrections: {c}", [s["corrections_by_cause"].get(c, 0) for s in summaries])
             for c in causes]
    rows += [(f"devices {st}", [s["devices_by_status"].get(st, 0) for s in summaries])
             for st in statuses]
    rows.append(("rejections", [s["outputs"].get(t.REJECTIONS, 0) for s in summaries]))
    rows.append(("dead letters", [s["accounted"].get("dead_lettered", 0) for s in summaries]))
    rows.append(("seconds", [s["seconds"] for s in summaries]))
    if len(outcomes) > 1:
        rows.append(("devices differing from the first", [_differing(outcomes[0], o)
                                                          for o in outcomes]))
    head = "| | " + " | ".join(s["policy"] for s in summaries) + " |"
    rule = "|---" * (len(summaries) + 1) + "|"
    body = [f"| {label} | " + " | ".join(str(v) for v in values) + " |" for label, values in rows]
    return "\n".join([head, rule, *body]) + "\n"


def _differing(a: Outcome, b: Outcome) -> int:
    keys = a.smi.keys() | b.smi.keys()
    return sum(1 for k in keys if _state(a.smi.get(k)) != _state(b.smi.get(k)))


def _state(device: Device | None) -> tuple[str, str] | None:
    return (device.status, device.firmware_version) if device else None


def policies(names: Iterable[str], base: Policy) -> list[Policy]:
    """Policies by name (baseline, sr11.2, retry, mp105), other settings from ``base``."""
    out = []
    for name in names:
        if name not in POLICY_SWITCHES:
            raise ConfigError(f"unknown policy {name!r}: choose from {', '.join(POLICY_SWITCHES)}")
        sr11_2, retry = POLICY_SWITCHES[name]
        out.append(replace(base, sr11_2_when_suspended=sr11_2, sr11_3_retry_updates_smi=retry))
    return out

"""The decoded records kept in front of the table: bounded, and never a different decision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP

from schemas.codec import dumps
from streams import topics as t
from streams.app import create_app
from streams.backends import backend_of
from streams.core.records import Device
from streams.repartition import home_of
from streams.settings import Settings
from streams.tables import RecentRecords
from streams.tools.workload import FIRMWARES, Workload, cpl
from streams.tools.workload import Message as WorkloadMessage
from tests.unit.incoming import Message, drive

NOW = datetime(2026, 11, 27, 9, tzinfo=UTC)


def device(n: int) -> Device:
    return Device(device_id=f"00-DB-03-00-00-00-00-{n:02X}", device_type="ESME", smets=2,
                  manufacturer="AB01", model="010A030B", hardware_version="0001",
                  firmware_version="0002012F", status="Commissioned",
                  supplier="90-B3-D5-1F-30-01-00-01")


def test_the_least_recently_used_record_goes_first() -> None:
    recent = RecentRecords(2)
    recent.put(0, "a", device(1))
    recent.put(0, "b", device(2))
    assert recent.get(0, "a") == device(1)  # now b is the least recent
    recent.put(1, "c", device(3))
    assert (recent.get(0, "b"), recent.get(0, "a"), recent.get(1, "c")) == (
        None, device(1), device(3))
    assert len(recent) == 2 and (recent.hits, recent.misses) == (3, 1)


def test_a_key_is_kept_per_partition_and_size_0_keeps_nothing() -> None:
    recent = RecentRecords(10)
    recent.put(0, "a", device(1))
    assert recent.get(1, "a") is None
    empty = RecentRecords(0)
    empty.put(0, "a", device(1))
    assert len(empty) == 0 and empty.get(0, "a") is None


def partition_of(device: str) -> int:
    """The partition of 4 a device lives on (murmur2, as Kafka's Java producer places it)."""
    return home_of(device, 4)


def owning(settings: Settings, partitions: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A processor whose worker owns every partition (a CPL removal scans the owned ones)."""
    app = create_app(settings)
    processor = app.smi.processor
    owned = {TP(processor.changelog_name, p) for p in range(partitions)}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: owned)
    processor.emitter.holding = lambda: True  # outputs stay in the emitter, for the test
    processor.decider.now = lambda: NOW  # so that two runs' outputs compare equal
    return processor


def as_input(settings: Settings, messages: list[WorkloadMessage], start: int = 0
             ) -> list[Message]:
    """Workload messages, each on its device's partition (the CPL's on partition 0), stamped
    in the order given."""
    return [Message(settings.topic(m.topic), 0 if m.topic == t.CPL else partition_of(
        m.key.decode()), offset, m.key, m.value, offset)
            for offset, m in enumerate(messages, start)]


async def feed(processor: Any, settings: Settings, messages: list[WorkloadMessage],
               start: int = 0) -> None:
    await drive(processor, as_input(settings, messages, start))


def decide_workload(tmp_path: Path, cache_size: int, monkeypatch: pytest.MonkeyPatch
                    ) -> tuple[list[Any], dict[str, Any]]:
    """The benchmark's mix and a CPL removal through the processor on RocksDB, without Kafka:
    every output and every device's final record."""
    settings = Settings(data_dir=tmp_path / str(cache_size), app_id="unit", store="rocksdb://",
                        partitions=4, record_cache_size=cache_size)
    processor = owning(settings, 4, monkeypatch)
    workload = Workload(300, seed=11)
    messages = [*workload.setup(), *workload.events(6_000, cpl_changes=False),
                cpl(FIRMWARES[0], "Removed")]
    outputs: list[Any] = []

    async def run() -> None:
        await feed(processor, settings, messages)
        for emitter in (processor.emitter, processor.cpl_emitter):
            for (topic, partition, _), records in sorted(emitter.pending.items()):
                outputs.extend((topic, partition, k, orjson.loads(v)) for k, v, _, _ in records)

    asyncio.run(run())
    table = processor.tables.device_to_record
    final = {device: backend_of(table).get(partition_of(device), device)
             for device in {m.key.decode() for m in messages if m.topic != t.CPL}}
    return outputs, final


def test_recent_records_never_change_a_decision(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    without = decide_workload(tmp_path, 0, monkeypatch)
    small = decide_workload(tmp_path, 50, monkeypatch)  # most reads miss, records evicted
    assert len(without[0]) > 3_000 and any(without[1].values())
    assert any(o[0] == "smi.status-corrections" and o[3]["cause"] == "cpl-removed"
               for o in without[0])
    assert small == without
    assert decide_workload(tmp_path, 10_000, monkeypatch) == without


def test_a_rebalance_empties_the_recent_records(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, app_id="unit"))
    recent = app.smi.processor.recent
    for signal in (app.on_partitions_revoked, app.on_partitions_assigned):
        recent.put(0, "a", device(1))
        asyncio.run(signal.send(set()))
        assert len(recent) == 0


def test_a_cpl_removal_leaves_the_recent_records_as_they_were(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A mass change would otherwise push out every recently decided device; the devices it
    changed are dropped from the recent records, so none is left stale."""
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=4, record_cache_size=100)
    processor = owning(settings, 4, monkeypatch)
    setup = list(Workload(3).setup())
    devices = [m.key.decode() for m in setup if m.topic != t.CPL]

    async def run() -> None:
        await feed(processor, settings, setup)
        processor.recent.clear()
        processor.records.read(partition_of(devices[0]), devices[0])  # the one recently decided
        await feed(processor, settings, [cpl(FIRMWARES[0], "Removed")], start=len(setup))

    asyncio.run(run())
    assert processor.metrics.corrections["cpl-removed"] == 3
    assert len(processor.recent) == 0  # device 0 suspended, so dropped; 1 and 2 not added
    record = processor.records.read(partition_of(devices[0]), devices[0])
    assert record is not None and record.status == "Suspended"


def test_the_memory_store_reads_a_record_through_its_own_partition_only(tmp_path: Path) -> None:
    """As on RocksDB, whose databases are per partition: the recent records, kept per
    partition, then always agree with it."""
    app = create_app(Settings(data_dir=tmp_path, app_id="unit"))
    table = app.smi.tables.device_to_record
    value = device(1).to_dict(1)
    backend_of(table).put(1, "a", value, dumps(value))
    assert backend_of(table).get(1, "a") == value
    assert backend_of(table).get(0, "a") is None

"""The SMI table: one record per device, backed by its changelog (the CPL: ``streams/cpl.py``)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TableT

from streams import engine
from streams.backends import ScanGuard, backend_of
from streams.core.records import Device
from streams.settings import Settings


@dataclass(frozen=True)
class Tables:
    device_to_record: TableT[str, dict[str, Any]]  # device ID -> SMI record; one agent writes


def build(app: faust.App, settings: Settings) -> Tables:
    table: TableT = app.conf.Table(  # type: ignore[operator]
        app, name="device_to_record", beacon=app.tables.beacon,
        partitions=settings.partitions, options=rocksdb_options(settings))
    # registered once its changelog is right: faust's table manager keys it by that name
    app.tables.add(_readable(table, changelog_topic(settings)))
    return Tables(device_to_record=table)


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    """Bounded memory per partition (ignored by the memory store)."""
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_mib << 20,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mib << 20,
    }


def _readable(table: TableT, changelog: str) -> TableT:
    # faust picks changelog serializers from key_type/value_type only (json unless a faust
    # Record) and makes the changelog topic in __init__: set them and make it again, so that
    # writes and recovery agree and other clients read text keys and plain JSON values. Its
    # name (which faust's assignor also asks the table for) gets the topic prefix.
    table.key_serializer = "text"  # type: ignore[attr-defined]
    table.value_serializer = "smi"  # type: ignore[attr-defined]
    table.changelog_topic = engine.name_changelog(table, changelog)
    return table


def changelog_topic(settings: Settings, table: str = "device_to_record") -> str:
    """The SMI lives in this topic: named after the app, as faust would, behind the topic
    prefix, so that a new prefix is a fresh start for the table too."""
    return f"{settings.topic_prefix}{settings.app_id}-{table}-changelog"


# Each partition group keeps where it has got to (``streams.order.GroupState``) in the table,
# under a key no device ID can have, so that it commits with the records it goes with.
GROUP_PREFIX = "~group/"


def group_key(partition: int) -> str:
    return f"{GROUP_PREFIX}{partition}"


# ``smi rebuild`` marks a partition under this key before it writes the partition's records,
# and deletes the mark after the last: a mark left says the partition is partial.
REBUILDING_PREFIX = "~rebuilding/"


def rebuilding_key(partition: int) -> str:
    return f"{REBUILDING_PREFIX}{partition}"


def unfinished_rebuilds(latest: Mapping[str, Any]) -> frozenset[int]:
    """The partitions whose rebuild mark is live in ``latest`` (the changelog's last value
    per key): what a rebuild that did not finish left."""
    return frozenset(int(key.removeprefix(REBUILDING_PREFIX)) for key, value in latest.items()
                     if key.startswith(REBUILDING_PREFIX) and value is not None)


class RecentRecords:
    """The decoded records of the devices decided most recently, in front of the table.

    Reading a record from RocksDB and decoding it is a large part of deciding an event
    (docs/performance.md). A response follows its request by seconds, so the record it needs
    is usually here. Every write of the agents goes to the table and here alike, so a hit is
    what the table holds; a rebalance empties it (recovery writes the table directly, and the
    partitions it covered may have moved). ``size`` records at most, least recent out first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._records: OrderedDict[tuple[int, str], Device] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, partition: int, key: str) -> Device | None:
        record = self._records.get((partition, key))
        if record is None:
            self.misses += 1
            return None
        self._records.move_to_end((partition, key))
        self.hits += 1
        return record

    def put(self, partition: int, key: str, record: Device) -> None:
        if not self.size:
            return
        records = self._records
        records[(partition, key)] = record
        records.move_to_end((partition, key))
        if len(records) > self.size:
            records.popitem(last=False)

    def discard(self, partition: int, key: str) -> None:
        self._records.pop((partition, key), None)

    def clear(self) -> None:
        self._records.clear()

    def __len__(self) -> int:
        return len(self._records)


def flush_tables(tables: Iterable[TableT]) -> None:
    """Write what the stores hold in memory to disk, before a stop is called clean."""
    for table in tables:
        backend_of(table).flush()


async def table_statuses(table: TableT[str, dict[str, Any]], partitions: set[int],
                         guard: ScanGuard) -> Counter[str]:
    """How many records of ``partitions`` have each status (a table can hold millions)."""
    counts: Counter[str] = Counter()
    async for chunk in backend_of(table).chunks(partitions, guard, values=True):
        counts.update(v["status"] if isinstance(v, dict) else orjson.loads(v)["status"]
                      for v in chunk)
    return counts


async def table_size(table: TableT[str, dict[str, Any]], partitions: set[int],
                     guard: ScanGuard) -> int:
    """How many records ``partitions`` hold, read as keys alone."""
    chunks = backend_of(table).chunks(partitions, guard, values=False)
    return sum([len(chunk) async for chunk in chunks])

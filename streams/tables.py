"""The SMI table: one record per device, backed by its changelog (the CPL: ``streams/cpl.py``)."""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

import faust
import orjson
import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, TableT

from streams.core.records import Device
from streams.errors import Rebalanced
from streams.settings import Settings


@dataclass(frozen=True)
class Tables:
    device_to_record: TableT[str, dict[str, Any]]  # device ID -> SMI record; one agent writes


def build(app: faust.App, settings: Settings) -> Tables:
    return Tables(
        device_to_record=_readable(app.Table("device_to_record", partitions=settings.partitions,
                                             options=rocksdb_options(settings))),
    )


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    """Bounded memory per partition (ignored by the memory store)."""
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_mib << 20,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mib << 20,
    }


def _readable(table: TableT) -> TableT:
    # faust picks changelog serializers from key_type/value_type only (json unless a faust
    # Record) and makes the changelog topic in __init__: set them and make it again, so that
    # writes and recovery agree and other clients read text keys and plain JSON values.
    table.key_serializer = "text"  # type: ignore[attr-defined]
    table.value_serializer = "smi"  # type: ignore[attr-defined]
    table.changelog_topic = table._new_changelog_topic()  # type: ignore[attr-defined]
    return table


def changelog_topic(settings: Settings, table: str = "device_to_record") -> str:
    """faust names a table's changelog after the app: the SMI lives in this topic."""
    return f"{settings.app_id}-{table}-changelog"


# Each partition group keeps where it has got to (``streams/order.py``) in the table, under a
# key no device ID can have, so that it commits with the records it goes with.
TAKEN_PREFIX = "~taken/"


def taken_key(partition: int) -> str:
    return f"{TAKEN_PREFIX}{partition}"


def is_device(key: str | bytes) -> bool:
    return not (key.startswith(b"~") if isinstance(key, bytes) else key.startswith("~"))


def table_read(table: TableT[str, dict[str, Any]], key: str, partition: int
               ) -> dict[str, Any] | None:
    """A record from the local store, past the layers of faust's table API (which find the
    partition through the event being processed: batches have none)."""
    store = table.data
    if isinstance(store, RocksDBStore):
        raw = store._db_for_partition(partition).get(key.encode())
        return None if raw is None else cast(dict[str, Any], orjson.loads(raw))
    value = store.data.get(key)  # type: ignore[attr-defined]
    # one dict for every partition: a record written through another partition (its key in
    # another case) is not this partition's, as it would not be on RocksDB
    return value if value is not None and value["partition"] == partition else None


# The changelog, not RocksDB's write-ahead log, is what survives a crash: after an unclean stop
# the tables are rebuilt from it (``streams.worker.forget_unclean_tables``), and a clean stop
# flushes them (:func:`flush_tables`). Writing the log as well cost about a seventh of deciding
# an event, measured in process without Kafka.
_NO_WAL = rocksdict.WriteOptions()
_NO_WAL.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; stubs lag


def table_write(table: TableT[str, dict[str, Any]], key: str, partition: int,
                value: dict[str, Any], raw: bytes) -> None:
    """Into the local store only: the changelog record goes out with the batch
    (``streams/emit.py``). ``raw`` is ``value`` encoded, for RocksDB to keep as it is."""
    store = table.data
    if isinstance(store, RocksDBStore):
        # encoded once, for the store and the changelog
        store._db_for_partition(partition).put(key.encode(), raw, _NO_WAL)
    else:
        store[key] = value


class RecentRecords:
    """The decoded records of the devices decided most recently, in front of the table.

    Reading a record from RocksDB and decoding it was about a fifth of deciding an event
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
    """Write what RocksDB holds in memory to disk, before a stop is called clean: the writes
    skip its write-ahead log, and faust never closes its databases (a dropped one flushes
    itself; one still open at exit would not)."""
    for table in tables:
        store = table.data
        if isinstance(store, RocksDBStore):
            for db in store._dbs.values():
                db.flush()


SCAN_CHUNK = 5_000  # records read at a time under the batch lock by a table scan


async def table_statuses(table: TableT[str, dict[str, Any]], partitions: set[int],
                         guard: ScanGuard) -> Counter[str]:
    """How many records of ``partitions`` have each status (a table can hold millions)."""
    counts: Counter[str] = Counter()
    async for chunk in _scan(table, partitions, guard, values=True):
        counts.update(v["status"] if isinstance(v, dict) else orjson.loads(v)["status"]
                      for v in chunk)
    return counts


async def table_size(table: TableT[str, dict[str, Any]], partitions: set[int],
                     guard: ScanGuard) -> int:
    """How many records ``partitions`` hold, read as keys alone."""
    return sum([len(chunk) async for chunk in _scan(table, partitions, guard, values=False)])


@dataclass(frozen=True)
class ScanGuard:
    """What keeps a scan out of the agents' way: it reads :data:`SCAN_CHUNK` records at a time
    under ``lock`` (the consumer's batch lock, which a rebalance also waits for) and lets the
    event loop run between chunks; ``current`` turns False once a rebalance has begun."""

    lock: asyncio.Lock
    current: Callable[[], bool]


async def _scan(table: TableT[str, dict[str, Any]], partitions: set[int], guard: ScanGuard,
                values: bool) -> AsyncIterator[list[Any]]:
    store = table.data
    if not isinstance(store, RocksDBStore):
        records = store.data.items()  # type: ignore[attr-defined]
        owned = [v for k, v in records  # before any await
                 if v.get("partition") in partitions and is_device(k)]
        for start in range(0, len(owned), SCAN_CHUNK):
            yield owned[start:start + SCAN_CHUNK]
            await asyncio.sleep(0)
        return
    for partition in sorted(partitions):
        after: bytes | None = None
        while True:
            async with guard.lock:
                # no RocksDB handle is kept past the lock: faust drops and reopens them in a
                # rebalance, and RocksDB refuses a second handle on one directory
                if not guard.current():
                    raise Rebalanced("a rebalance began during the scan")
                db = store._db_for_partition(partition)
                keys, chunk = _chunk(db, after, store.offset_key, values)
            yield chunk
            if len(keys) < SCAN_CHUNK:
                break
            after = keys[-1]
            await asyncio.sleep(0)


def _chunk(db: Any, after: bytes | None, skip: bytes, values: bool
           ) -> tuple[list[bytes], list[Any]]:
    """Up to :data:`SCAN_CHUNK` keys after ``after`` (and their values, with ``values``)."""
    items = db.items(from_key=after) if values else ((k, None) for k in db.keys(from_key=after))
    if after is not None:
        next(items, None)  # from_key starts at ``after`` itself, read in the last chunk
    pairs = list(islice(items, SCAN_CHUNK))
    keys = [k for k, _ in pairs]
    return keys, [v if values else k for k, v in pairs if k != skip and is_device(k)]


def table_persisted(table: TableT[str, dict[str, Any]]) -> Callable[[str, int, int], None] | None:
    """What tells a RocksDB store how far its changelog is written, so that a restart only
    reads what came after (faust does this for the writes it sends itself)."""
    store = table.data
    if not isinstance(store, RocksDBStore):
        return None
    return lambda topic, partition, offset: store.set_persisted_offset(TP(topic, partition),
                                                                        offset)

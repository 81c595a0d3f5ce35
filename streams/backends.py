"""A table's local store, one class per backend, reached past faust's table API.

faust's table finds a key's partition through the event being processed; the worker decides
batches, which have none, and writes each record as the bytes it also sends to the changelog.
:func:`backend_of` picks the class once, for the store faust made (``memory://`` or
``rocksdb://``); everything that reads or writes the SMI table locally goes through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol, cast

import orjson
import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, TableT
from rocksdict import WriteBatch

from streams import engine
from streams.errors import Rebalanced

SCAN_CHUNK = 5_000  # records read at a time under the batch lock by a scan

Raw = tuple[bytes, bytes | None]  # a changelog record: key, value (None: deleted)


def is_device(key: str | bytes) -> bool:
    """Keys that start with ``~`` are the worker's own bookkeeping (``streams/order.py``)."""
    return not (key.startswith(b"~") if isinstance(key, bytes) else key.startswith("~"))


@dataclass(frozen=True)
class ScanGuard:
    """What keeps a scan out of the agents' way: it reads :data:`SCAN_CHUNK` records at a time
    under ``lock`` (the consumer's batch lock, which a rebalance also waits for) and lets the
    event loop run between chunks; ``current`` turns False once a rebalance has begun."""

    lock: asyncio.Lock
    current: Callable[[], bool]


class Backend(Protocol):
    def get(self, partition: int, key: str) -> dict[str, Any] | None: ...
    def put(self, partition: int, key: str, value: dict[str, Any], raw: bytes) -> None:
        """``raw`` is ``value`` encoded, for a store that keeps bytes."""
        ...
    def load(self, partition: int, records: Iterable[Raw]) -> None:
        """Changelog records, as recovery reads them."""
        ...
    def persisted(self, topic: str, partition: int, offset: int) -> None:
        """The changelog is written up to ``offset``: a restart reads only what follows."""
        ...
    def flush(self) -> None: ...
    def chunks(self, partitions: set[int], guard: ScanGuard, values: bool
               ) -> AsyncIterator[list[Any]]:
        """The devices of ``partitions`` (values, or keys alone), a chunk at a time."""
        ...


def backend_of(table: TableT[Any, Any]) -> Backend:
    store = table.data
    return RocksDB(store) if isinstance(store, RocksDBStore) else Memory(store)


class Memory:
    """faust's memory store: one dict for every partition, of decoded values, each holding
    the partition it was written from."""

    def __init__(self, store: Any) -> None:
        self.data = cast(dict[str, Any], store.data)

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        # a record written through another partition (its key in another case) is not this
        # partition's, as it would not be on RocksDB
        return value if value is not None and value["partition"] == partition else None

    def put(self, partition: int, key: str, value: dict[str, Any], raw: bytes) -> None:
        self.data[key] = value

    def load(self, partition: int, records: Iterable[Raw]) -> None:
        for key, value in records:
            if value is None:
                self.data.pop(key.decode(), None)
            else:
                self.data[key.decode()] = orjson.loads(value)

    def persisted(self, topic: str, partition: int, offset: int) -> None:
        return None  # nothing survives a restart

    def flush(self) -> None:
        return None

    async def chunks(self, partitions: set[int], guard: ScanGuard, values: bool
                     ) -> AsyncIterator[list[Any]]:
        owned = [v if values else k for k, v in self.data.items()  # before any await
                 if v.get("partition") in partitions and is_device(k)]
        for start in range(0, len(owned), SCAN_CHUNK):
            yield owned[start:start + SCAN_CHUNK]
            await asyncio.sleep(0)


# The changelog, not RocksDB's write-ahead log, is what survives a crash: after an unclean stop
# the tables are rebuilt from it (``streams.worker.forget_unclean_tables``), and a clean stop
# flushes them (:meth:`RocksDB.flush`). Writing the log as well cost about a seventh of
# deciding an event, measured in process without Kafka.
_NO_WAL = rocksdict.WriteOptions()
_NO_WAL.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; stubs lag


class RocksDB:
    """faust's RocksDB store: a database per partition, of the encoded values. No handle is
    kept: faust drops and reopens them in a rebalance."""

    def __init__(self, store: RocksDBStore) -> None:
        self.store = store

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        raw = engine.rocksdb_partition(self.store, partition).get(key.encode())
        return None if raw is None else cast(dict[str, Any], orjson.loads(raw))

    def put(self, partition: int, key: str, value: dict[str, Any], raw: bytes) -> None:
        engine.rocksdb_partition(self.store, partition).put(key.encode(), raw, _NO_WAL)

    def load(self, partition: int, records: Iterable[Raw]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        engine.rocksdb_partition(self.store, partition).write(batch)

    def persisted(self, topic: str, partition: int, offset: int) -> None:
        self.store.set_persisted_offset(TP(topic, partition), offset)

    def flush(self) -> None:
        # faust never closes its databases: a dropped one flushes itself, one still open at
        # exit would not
        for db in engine.rocksdb_open(self.store):
            db.flush()

    async def chunks(self, partitions: set[int], guard: ScanGuard, values: bool
                     ) -> AsyncIterator[list[Any]]:
        for partition in sorted(partitions):
            after: bytes | None = None
            while True:
                async with guard.lock:
                    if not guard.current():
                        raise Rebalanced("a rebalance began during the scan")
                    db = engine.rocksdb_partition(self.store, partition)
                    keys, chunk = _chunk(db, after, self.store.offset_key, values)
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

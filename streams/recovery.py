"""Table recovery as a bulk load.

faust recovers a table by reading its changelog through the consumer and its streams, one
message at a time, and RocksDB writes in batches of its own: minutes for a million devices
(``docs/performance.md``). Before faust works out where its
recovery starts and ends, :class:`Recovery` reads each assigned active changelog partition to
its end with a consumer of its own, writes each fetched batch as one RocksDB ``WriteBatch``
(or into the memory store), and records how far it got. faust then finds nothing left to read.

It has most of faust's time limit for that step (``broker_request_timeout``); a changelog too
long for it is left where the bulk load stopped and faust reads the rest its own way. Standby
partitions are left to faust, which follows them in the background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.types import TP, TableT

from streams import engine
from streams.backends import backend_of
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.app import SmiApp

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 10.0


class Recovery(engine.Recovery):
    async def before_highwaters(self, tps: set[TP], title: str) -> None:
        # before faust reads the highwaters: it refuses an offset above the one it read, and
        # other workers' transactions move the changelog on during a rebalance
        if title == "active" and tps:
            settings: Settings = cast("SmiApp", self.app).smi.settings
            budget = 0.75 * float(self.app.conf.broker_request_timeout)
            tables = {tp: cast(TableT, self.tp_to_table[tp]) for tp in tps}
            await BulkLoad(tables, self.active_offsets).run(settings, time.monotonic() + budget)


class TableManager(engine.TableManager):
    recovery_class = Recovery


class BulkLoad:
    """Each changelog partition from the record after ``offsets[tp]`` (the last one applied,
    faust's convention) to its end; ``offsets`` is moved on as batches are written."""

    def __init__(self, tables: Mapping[TP, TableT], offsets: MutableMapping[TP, Any]):
        self.tables = tables
        self.offsets = offsets
        self.loaded = 0

    async def run(self, settings: Settings, deadline: float) -> None:
        consumer = AIOKafkaConsumer(
            # records deleted while it reads: go on from what remains, not from the end
            enable_auto_commit=False, max_partition_fetch_bytes=4 << 20,
            auto_offset_reset="earliest",
            # committed under both: records of a transaction that a worker under exactly_once
            # left open or aborted are no part of the table, whatever the guarantee is now
            isolation_level="read_committed",
            **settings.kafka_client_options())
        await consumer.start()
        try:
            await self._load(consumer, deadline)
        finally:
            await consumer.stop()

    async def _load(self, consumer: AIOKafkaConsumer, deadline: float) -> None:
        tps = [_kafka_tp(tp) for tp in self.tables]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        todo = {tp: end for tp, end in ends.items() if self._next(tp) < end}
        if not todo:
            return
        total = sum(end - self._next(tp) for tp, end in todo.items())
        log.info("recovering up to %d changelog records from %d partitions", total, len(todo))
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, self._first(tp, starts[tp]))
        started = shown = time.monotonic()
        while todo and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, records in fetched.items():
                self._write(tp, records)
            for tp in list(todo):
                position = await consumer.position(tp)
                self._reached(tp, position)
                if position >= todo[tp]:
                    del todo[tp]
            if time.monotonic() - shown >= PROGRESS_SECONDS:
                shown = time.monotonic()
                log.info("recovered %d of %d changelog records", self.loaded, total)
        elapsed = time.monotonic() - started
        log.info("recovered %d changelog records in %.1fs%s", self.loaded, elapsed,
                 f"; {len(todo)} partitions left to faust" if todo else "")

    def _first(self, tp: TopicPartition, start: int) -> int:
        """Where to read from: the record after the last one applied, or the log start when
        the records before it are gone (deleted, or past retention). The consumer's own
        answer to a missing offset would be to skip to the end, losing the whole partition."""
        wanted = self._next(tp)
        if wanted < start:
            log.error("changelog %s[%d] starts at offset %d: the records before it are gone, "
                      "so the devices only they held are not recovered (%d records); run "
                      "`smi verify` to list them", tp.topic, tp.partition, start, start - wanted)
        return max(wanted, start)

    def _next(self, tp: TopicPartition) -> int:
        last = self.offsets.get(TP(tp.topic, tp.partition))
        return 0 if last is None or last < 0 else last + 1

    def _write(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        backend = backend_of(self.tables[TP(tp.topic, tp.partition)])
        backend.load(tp.partition, [(r.key, r.value) for r in records])
        self.loaded += len(records)

    def _reached(self, tp: TopicPartition, position: int) -> None:
        """Every record below ``position`` is applied (transaction markers take offsets too)."""
        key = TP(tp.topic, tp.partition)
        last = self.offsets.get(key)
        if last is not None and position - 1 <= last:
            return
        self.offsets[key] = position - 1
        backend_of(self.tables[key]).persisted(key.topic, key.partition, position - 1)


def _kafka_tp(tp: TP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)

"""The CPL, held in full by every worker: a replica of the ``cpl.entries`` topic.

A faust ``GlobalTable`` was the first shape, but with several workers it did not follow what the
other workers wrote to its changelog (faust #541): a worker went on deciding against a CPL
without the entries another worker had read, and suspended devices whose firmware was listed.
The CPL is small and its topic is the source of truth, so each worker reads every partition of
that topic itself with a plain consumer, from the beginning, and keeps following it.

Every valid message also goes into :attr:`CplReplica.timeline`, with its timestamp, and the
reader says there which partitions it has read to their end: each partition group takes the
CPL's changes from there at their own timestamps (``streams/order.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import decode_input
from schemas.models import CplEntry
from streams import topics as t
from streams.errors import InvalidEvent
from streams.order import CplItem, CplTimeline
from streams.settings import Settings

log = logging.getLogger(__name__)

Position = tuple[int, int]  # (partition, offset) of the message an entry came from


class CplReplica:
    """``entries`` maps MANUFACTURER:MODEL:HARDWARE:FIRMWARE to the entry as JSON values."""

    def __init__(self, settings: Settings, max_bytes: int) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self.entries: dict[str, dict[str, Any]] = {}
        self._positions: dict[str, Position] = {}
        self.timeline = CplTimeline(settings.partitions)
        self.ready = asyncio.Event()  # set once the topic has been read to its end at start

    def apply(self, entry: CplEntry, partition: int, offset: int) -> None:
        """Take an entry unless a later message for its key was taken already."""
        seen = self._positions.get(entry.key)
        if seen is not None and seen[0] == partition and seen[1] >= offset:
            return
        self._positions[entry.key] = (partition, offset)
        self.entries[entry.key] = entry.model_dump(mode="json")

    def apply_raw(self, key: bytes | None, value: bytes | None, partition: int,
                  offset: int, timestamp: int = 0) -> None:
        """A message that fails validation holds its place in the timeline and changes
        nothing: the ``track_cpl`` agent dead-letters it. It takes its place at its partition
        time, as a device record does (``streams/order.py``)."""
        timestamp = self.timeline.time_of(partition, timestamp)
        try:
            entry = decode_input(t.CPL, key, value, self.max_bytes)
        except InvalidEvent:
            self.timeline.add(partition, CplItem((timestamp, 0, partition, offset), None))
            return
        assert isinstance(entry, CplEntry)
        self.apply(entry, partition, offset)
        self.timeline.add(partition, CplItem((timestamp, 0, partition, offset), entry))

    async def follow(self) -> None:
        """Read the topic from the beginning, set :attr:`ready` at its end, then keep up."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, isolation_level="read_committed",
                                    **self.settings.kafka_client_options())
        await consumer.start()
        try:
            ends = await self._assign_all(consumer)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batch.values():
                    for r in records:
                        self.apply_raw(r.key, r.value, r.partition, r.offset, r.timestamp)
                await self._mark_caught_up(consumer, ends)
                if not self.ready.is_set() and await _reached(consumer, ends):
                    log.info("CPL read: %d entries", len(self.entries))
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _mark_caught_up(self, consumer: AIOKafkaConsumer,
                              ends: dict[TopicPartition, int]) -> None:
        """Tell the timeline which partitions are read to the end the last fetch gave (the
        end read at start until a fetch has answered)."""
        for tp, start_end in ends.items():
            end = consumer.last_stable_offset(tp)
            end = start_end if end is None or end < 0 else end
            self.timeline.set_caught_up(tp.partition, await consumer.position(tp) >= end)

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        # the worker made sure the topic exists with this many partitions before it started
        tps = [TopicPartition(self.settings.topic(t.CPL), p)
               for p in range(self.settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return dict(await consumer.end_offsets(tps))


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True

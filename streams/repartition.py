"""One home per device: the repartition topic's two kinds of message, and where a device lives.

A device lives on the murmur2 partition of its canonical ID (the upper-case ID in the
payload), as Kafka's Java producer would place it. A record read from another partition (a
key in lower case, another partitioner, a key that is not the payload's device, no key) is
**forwarded**: its group writes it, unchanged, to the device's partition of the app's
repartition topic, and the device's group decides it from there, in the order ``smi replay``
gives it (its original topic, partition, offset and partition time ride along in headers, so
that its merge key and the IDs of its outputs are the same).

A group forwards what it fetched at once, before it decides anything, so that no group waits
for another's decisions. So that a group never decides past a record still to be forwarded
to it, every group also writes **watermarks** to every partition of the repartition topic:
per topic, a key below which it has nothing left to forward (what it has fetched so far, or
idle once it has read to the end; ``streams/order.py``). Both go through the producer (and, under
exactly_once, the transaction) of the group that sends them, so they commit with its input.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import orjson

ORIGIN = "smi-origin"  # header of a forward: "<rank> <partition> <offset>"
ORIGIN_TIME = "smi-origin-time"  # and the time its original is ordered at (ms)
WATERMARK = "smi-watermark"  # header of a watermark: the sending group's partition
GENERATION = "smi-generation"  # and the consumer group generation it was said in
# (new facts go in headers of their own: a worker of an earlier release reads the ones it
# knows, and a rolling upgrade does not stop it)

Key = tuple[int, int, int, int]  # as streams.order.Key: timestamp, topic rank, partition, offset
IDLE: Key = (2**63, 0, 0, 0)  # a group with nothing left to forward at all
UNKNOWN: Key = (-1, 0, 0, 0)  # no watermark read yet: anything may still come
# device IDs whose home is kept, before the cache starts again: enough for the devices in
# flight (a request and its response come seconds apart); 2**20 held about 110 MB at a
# million devices, and a fleet of millions per worker misses a cache of any affordable size
HOMES_CACHED = 1 << 16


class Homes:
    """The partition each device ID lives on, with a bounded cache (murmur2 in Python costs
    far more than a dictionary lookup)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def __call__(self, device_id: str) -> int:
        home = self._cache.get(device_id)
        if home is None:
            if len(self._cache) >= HOMES_CACHED:
                self._cache.clear()
            home = self._cache[device_id] = home_of(device_id, self.partitions)
        return home


def home_of(device_id: str, partitions: int) -> int:
    """Java's default partitioner for a keyed record: ``toPositive(murmur2(key)) % n``."""
    return (murmur2(device_id.encode()) & 0x7FFFFFFF) % partitions


_M = 0x5BD1E995
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``Utils.murmur2`` in Java, ``aiokafka.partitioner.murmur2``), as an
    unsigned 32-bit int, in half the time of aiokafka's: every device's first event in a
    while misses the cache of :class:`Homes`. A product is cut to 32 bits only where a shift
    right follows: elsewhere only its low 32 bits count, and the low 32 bits of a product or
    an XOR depend only on those of its operands."""
    length = len(data)
    h = 0x9747B28C ^ length
    end = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:end]):
        k = (k * _M) & 0xFFFFFFFF
        h = h * _M ^ (k ^ k >> 24) * _M
    rest = length - end
    if rest:
        if rest == 3:
            h ^= data[end + 2] << 16
        if rest >= 2:
            h ^= data[end + 1] << 8
        h = (h ^ data[end]) * _M
    h &= 0xFFFFFFFF
    h = ((h ^ h >> 13) * _M) & 0xFFFFFFFF
    return h ^ h >> 15


class Forwarded(NamedTuple):
    """A record read back from the repartition topic: the original's topic (real name),
    partition, offset, timestamp, key and value, and where it sits in the repartition
    partition (``at``). It reads like the original (``streams.decider.Incoming``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    rank: int
    at: int


class Watermark(NamedTuple):
    source: int  # the group that sent it
    below: list[Key]  # per topic (in rank order), it has nothing left to forward below this
    at: int
    generation: int = 0  # the consumer group's generation it was said in (-1: not said)


def origin_headers(rank: int, partition: int, offset: int, time: int
                   ) -> list[tuple[str, bytes]]:
    # the time rides along too: the repartition record's timestamp is the time the broker
    # wrote it (the topic is LogAppendTime, streams/topics.py), and the merge needs the
    # original's partition time (streams/order.py), which only its partition tells
    return [(ORIGIN, f"{rank} {partition} {offset}".encode()),
            (ORIGIN_TIME, str(time).encode())]


def origin_of(header: bytes) -> tuple[int, int, int]:
    """A forward's original: topic rank, partition and offset."""
    rank, partition, offset = map(int, header.split())
    return rank, partition, offset


def watermark_message(source: int, below: list[Key], generation: int
                      ) -> tuple[bytes, list[tuple[str, bytes]]]:
    return orjson.dumps(below), [(WATERMARK, str(source).encode()),
                                 (GENERATION, str(generation).encode())]


def read(record: Any, topics: tuple[str, ...]) -> Forwarded | Watermark | None:
    """A repartition record as what it is; None for one this version cannot read (it is
    skipped). ``topics`` are the device topics' real names, in rank order from 1."""
    headers = dict(record.headers or ())
    if (origin := headers.get(ORIGIN)) is not None:
        rank, partition, offset = origin_of(origin)
        if not 1 <= rank <= len(topics):
            return None
        # a forward of an earlier release has no time header: its record's timestamp is the
        # original's (its topic was made CreateTime)
        stamp = headers.get(ORIGIN_TIME)
        return Forwarded(topics[rank - 1], partition, offset,
                         record.timestamp if stamp is None else int(stamp), record.key,
                         record.value, rank, record.offset)
    if (source := headers.get(WATERMARK)) is not None:
        below = [(k[0], k[1], k[2], k[3]) for k in orjson.loads(record.value)]
        said = headers.get(GENERATION)  # none from an earlier release: taken as stale
        return Watermark(int(source), below, record.offset, -1 if said is None else int(said))
    return None

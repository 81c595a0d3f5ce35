"""Input messages as the processor reads them, without Kafka (``streams.agents.Incoming``),
and a way to put them through its partition groups."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from streams.order import GroupState, Ordering
from streams.repartition import IDLE


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def ordering(processor: Any, forwards: bool = False) -> Ordering:
    """The processor's partition groups, as the worker makes them. Unless ``forwards``, no
    group waits for another's forwards (as if each had said it has none); with it, they wait
    for each other's watermarks as on a broker, and the caller reads back what they write."""
    partitions = processor.settings.partitions

    def restore(partition: int) -> GroupState | None:
        state = processor.group_state(partition)
        return state if state or forwards else GroupState(
            [0] * processor.cpl.timeline.partitions,
            {(q, rank): IDLE for q in range(partitions) for rank in (1, 2, 3)})

    return Ordering(processor.topics.device_topic.topics[:-1], processor.cpl_name,
                    processor.cpl.timeline, 3600.0 if forwards else 0.0, restore, 1 << 30,
                    processor.repartition_name, processor.classify)


async def drive(processor: Any, messages: Iterable[Message], forwards: bool = False) -> None:
    """``messages`` through the processor in time order, as a worker whose every partition
    is caught up decides them: CPL messages into its CPL replica, the others into their
    partition groups. With ``forwards``, what the groups write to the repartition topic is
    read back, round after round, until they write nothing more."""
    groups = ordering(processor, forwards)
    timeline = processor.cpl.timeline
    for partition in range(timeline.partitions):
        timeline.set_caught_up(partition, True)
    for m in messages:
        if m.topic == processor.cpl_name:
            processor.cpl.apply_raw(m.key, m.value, m.partition, m.offset, m.timestamp)
            await processor.on_cpl_message(m)
        else:
            groups.add(m.topic, m.partition, [m])
    partitions = range(processor.settings.partitions)
    await processor.on_device_fetch(groups.take(partitions, lambda *_: True, 0.0, 1 << 30))
    while written := _written_back(processor):
        for partition, records in written.items():
            groups.add(processor.repartition_name, partition, records)
        await processor.on_device_fetch(groups.take(partitions, lambda *_: True, 0.0, 1 << 30))


_offsets: dict[tuple[int, int], int] = {}  # (processor, partition) -> last offset written


def _written_back(processor: Any) -> dict[int, list[Message]]:
    """The repartition records the processor's emitter holds, taken out of it as a consumer
    of that topic reads them."""
    name, pending = processor.repartition_name, processor.emitter.pending
    out: dict[int, list[Message]] = {}
    for where in [w for w in pending if w[0] == name]:
        for key, value, timestamp, headers in pending.pop(where):
            if headers:
                at = (id(processor), where[1])
                offset = _offsets[at] = _offsets.get(at, -1) + 1
                out.setdefault(where[1], []).append(
                    Message(name, where[1], offset, key, value, timestamp or 0, tuple(headers)))
    return out

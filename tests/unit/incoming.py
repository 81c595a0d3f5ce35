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


def ordering(processor: Any) -> Ordering:
    """The processor's partition groups, as the worker makes them, waiting for nothing."""
    partitions = processor.settings.partitions

    def restore(partition: int) -> GroupState:  # no other group has anything to forward
        return processor.group_state(partition) or GroupState(
            [0] * processor.cpl.timeline.partitions,
            {(q, rank): IDLE for q in range(partitions) for rank in (1, 2, 3)})

    return Ordering(processor.topics.device_topic.topics[:-1], processor.cpl_name,
                    processor.cpl.timeline, 0.0, restore, 1 << 30,
                    processor.repartition_name, processor.classify)


async def drive(processor: Any, messages: Iterable[Message]) -> None:
    """``messages`` through the processor in time order, as a worker whose every partition
    is caught up decides them: CPL messages into its CPL replica, the others into their
    partition groups."""
    groups = ordering(processor)
    timeline = processor.cpl.timeline
    for partition in range(timeline.partitions):
        timeline.set_caught_up(partition, True)
    for m in messages:
        if m.topic == processor.cpl_name:
            processor.cpl.apply_raw(m.key, m.value, m.partition, m.offset, m.timestamp)
            await processor.on_cpl_message(m)
        else:
            groups.add(m.topic, m.partition, [m])
    taken = groups.take(range(processor.settings.partitions), lambda *_: True, 0.0, 1 << 30)
    await processor.on_device_fetch(taken)

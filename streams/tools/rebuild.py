"""``smi rebuild``: a new SMI table for a group whose table changelog is lost.

A worker refuses to start on a lost changelog, or one with a partition emptied (every record
deleted), while its group has committed input offsets there: it would run on an empty SMI
and reject every request ``unknown-device``. This command writes the table again from the
input, the way ``smi verify`` checks it, for each partition the changelog holds nothing of
(every partition when it is gone), or that an earlier rebuild did not finish. For each such
partition group:

- the direct records homed there, below the group's committed offsets, and the records
  forwarded to it, below its committed offset of the repartition topic;
- the CPL messages up to the latest timestamp among those (the prefix of each CPL partition);

are decided again with ``smi replay``'s merge, and every record is written to the changelog
with the group's state (``streams.order.GroupState``). Every such partition is marked before
any is written, and its mark deleted once it is. The worker then recovers that table and
goes on from its committed offsets. A partition whose mark is left (the rebuild stopped part
way) is refused by the worker and written again by the next rebuild.

What the lost table held beyond the committed offsets cannot be known: forwards a group had
decided out of order, past its committed offset, are decided again after a rebuild, and
their outputs sent again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from streams import topics as t
from streams.errors import ConfigError
from streams.order import GroupState
from streams.repartition import ORIGIN, Homes, origin_of
from streams.settings import Settings
from streams.tables import (
    changelog_topic,
    group_key,
    rebuilding_key,
    unfinished_rebuilds,
)
from streams.tools import replay
from streams.tools.client import Kafka

Origin = tuple[str, int, int]  # contract topic, partition, offset


@dataclass(frozen=True)
class Rebuilt:
    devices: int
    decided: int  # input records decided again
    partitions: list[int]  # those whose table was written


async def rebuild(settings: Settings) -> Rebuilt:
    async with Kafka(settings) as kafka:
        await _refuse_while_running(kafka, settings)
        committed = await _committed(kafka, settings)
        if not committed:
            raise ConfigError(f"group {settings.app_id} has committed nothing: start the "
                              "worker, which builds its table as it goes")
        lost = await _refuse_unless_whole(kafka, settings, committed)
        taken = await _forwards_taken(kafka, settings, committed)
    await t.ensure(settings)  # the changelog again, compacted
    records = await replay.read_inputs(settings)
    homes = Homes(settings.partitions)
    home = {id(r): replay.home_of_record(r, homes) for r in records if r.topic != t.CPL}
    devices = decided = 0
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_options())
    await producer.start()
    try:
        # every partition marked before any is written: one the rebuild does not reach is
        # refused by the worker too, whatever the input committed there
        await _sent(producer, changelog_topic(settings), [
            (partition, rebuilding_key(partition).encode(), {"partition": partition})
            for partition in sorted(lost)])
        for partition in sorted(lost):
            chosen = [r for r in records if r.topic != t.CPL and _decided(
                r, home[id(r)], partition, committed, taken[partition], settings)]
            chosen = _with_cpl(records, chosen)
            outcome = replay.run(chosen, settings.policy)
            state = _state(chosen, partition, settings)
            state.times = _times(records, partition, committed, settings)
            await _write(producer, settings, partition, outcome, state)
            devices, decided = devices + len(outcome.smi), decided + len(chosen)
        await producer.flush()
    finally:
        await producer.stop()
    return Rebuilt(devices, decided, sorted(lost))


async def _refuse_while_running(kafka: Kafka, settings: Settings) -> None:
    described = await kafka.admin.describe_consumer_groups([settings.app_id])
    members = described[0].groups[0][5] if described and described[0].groups else []
    if members:
        raise ConfigError(f"group {settings.app_id} has {len(members)} running workers: stop "
                          "them before rebuilding its table")


async def _refuse_unless_whole(kafka: Kafka, settings: Settings,
                               committed: dict[TopicPartition, int]) -> set[int]:
    """The partitions whose table is to be written: those the changelog holds nothing of
    (all of them when it is gone), and those an earlier rebuild did not finish; a table
    still there is not written over. The table is rebuilt from the input alone: all of it
    must still be on the broker."""
    changelog = changelog_topic(settings)
    lost = set(range(settings.partitions))
    if changelog in await kafka.admin.list_topics():
        lost = await t.empty_partitions(settings, changelog, lost) | unfinished_rebuilds(
            await kafka.latest_by_key(changelog))
        if not lost:
            raise ConfigError(f"the table's changelog {changelog} holds records in every "
                              "partition: rebuild writes a table only where none is")
    names = [settings.topic(n) for n in t.INPUTS] + [t.repartition_topic(settings)]
    await replay.refuse_cut(kafka, names, "a table rebuilt from what is left would be "
                            "partial. Start afresh with a new SMI_APP_ID instead")
    return lost


async def _committed(kafka: Kafka, settings: Settings) -> dict[TopicPartition, int]:
    offsets = await kafka.admin.list_consumer_group_offsets(settings.app_id)
    names = {settings.topic(n) for n in t.DEVICE_INPUTS} | {t.repartition_topic(settings)}
    return {tp: meta.offset for tp, meta in offsets.items()
            if tp.topic in names and meta.offset > 0}


async def _forwards_taken(kafka: Kafka, settings: Settings, committed: dict[TopicPartition, int]
                          ) -> dict[int, set[Origin]]:
    """Per home partition, the originals of the forwards below its committed offset."""
    name = t.repartition_topic(settings)
    spans = {tp: (0, end) for tp, end in committed.items() if tp.topic == name}
    taken: dict[int, set[Origin]] = defaultdict(set)
    async for messages in kafka.read_range(spans):
        for m in messages:
            origin = dict(m.headers or ()).get(ORIGIN)
            if origin is not None:
                rank, partition, offset = origin_of(origin)
                taken[m.partition].add((t.DEVICE_INPUTS[rank - 1], partition, offset))
    return taken


def _decided(record: replay.Record, home: int, partition: int,
             committed: dict[TopicPartition, int], taken: set[Origin],
             settings: Settings) -> bool:
    if home != partition:
        return False
    if record.partition != partition:
        return (record.topic, record.partition, record.offset) in taken
    end = committed.get(TopicPartition(settings.topic(record.topic), partition), 0)
    return record.offset < end


def _with_cpl(records: list[replay.Record], chosen: list[replay.Record]
              ) -> list[replay.Record]:
    """``chosen`` with each CPL partition's messages up to the latest of its timestamps,
    in the merged order of ``records``."""
    latest = max((r.timestamp for r in chosen), default=None)
    stopped: set[int] = set()  # CPL partitions past ``latest``: a prefix of each is applied
    keep = {id(r) for r in chosen}
    for r in records:
        if r.topic == t.CPL and r.partition not in stopped:
            if latest is None or r.timestamp > latest:
                stopped.add(r.partition)
            else:
                keep.add(id(r))
    return [r for r in records if id(r) in keep]


def _state(chosen: list[replay.Record], partition: int, settings: Settings) -> GroupState:
    """The CPL messages applied, and per source the last forward taken (forwards from one
    source arrive in its order, so those taken are a prefix of them)."""
    state = GroupState(cpl=[0] * settings.partitions)
    for r in chosen:
        if r.topic == t.CPL:
            state.cpl[r.partition] = r.offset + 1
        elif r.partition != partition:
            source = (r.partition, t.DEVICE_INPUTS.index(r.topic) + 1)
            state.forwarded[source] = max(state.forwarded.get(source, -1), r.offset)
    return state


def _times(records: list[replay.Record], partition: int,
           committed: dict[TopicPartition, int], settings: Settings) -> dict[int, int]:
    """Per device topic of the group, its partition time at its committed offset: the time
    of the last record below it (``records`` carry their partition times)."""
    times: dict[int, int] = {}
    for r in records:
        if r.topic != t.CPL and r.partition == partition and r.offset < committed.get(
                TopicPartition(settings.topic(r.topic), partition), 0):
            rank = t.DEVICE_INPUTS.index(r.topic) + 1
            times[rank] = max(times.get(rank, r.timestamp), r.timestamp)
    return times


async def _write(producer: AIOKafkaProducer, settings: Settings, partition: int,
                 outcome: replay.Outcome, state: GroupState) -> None:
    """Every record and the group's state of a marked partition, then its mark deleted once
    the broker has them all; raises unless it took them. A rebuild that stops part way
    leaves the mark: the worker refuses the partition and the next rebuild writes it again
    (it holds records, so it would not count as lost)."""
    topic = changelog_topic(settings)
    await _sent(producer, topic, [
        *((partition, device_id.encode(), record.to_dict(partition))
          for device_id, record in outcome.smi.items()),
        (partition, group_key(partition).encode(), state.to_dict(partition))])
    await _sent(producer, topic, [(partition, rebuilding_key(partition).encode(), None)])


async def _sent(producer: AIOKafkaProducer, topic: str,
                records: Iterable[tuple[int, bytes, dict[str, Any] | None]]) -> None:
    """Send ``records`` (partition, key, value; None deletes) and wait until the broker has
    taken every one; raise its first refusal."""
    sent = []
    try:
        for partition, key, value in records:
            sent.append(await producer.send(
                topic, None if value is None else orjson.dumps(value), key=key,
                partition=partition))
    finally:  # every future awaited, also when a send fails before the last
        results = await asyncio.gather(*sent, return_exceptions=True)
    if errors := [r for r in results if isinstance(r, BaseException)]:
        raise errors[0]

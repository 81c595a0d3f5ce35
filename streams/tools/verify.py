"""``smi verify``: does a running group's SMI equal a replay of what it has decided?

The group's table is read from its changelog, with where each partition group had got to
(``streams.order.GroupState``: the CPL messages it had applied, the forwards it had taken)
and the group's committed offsets. Each partition group's input up to those offsets, the
records forwarded to it that it had taken (``streams/repartition.py``) and the CPL messages
it had applied are decided again in this process by ``smi replay``'s merge into a fresh SMI.
A device whose record differs is listed. The offsets are read before and after the table;
while they move (the group is deciding) the read is tried again, a few times, so that both
describe the same moment.

The replay applies each CPL message at its timestamp; a worker applies one that its CPL
reader read after the group had decided past that timestamp when it arrives. Devices such a
late message touched show as different.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from streams import topics as t
from streams.errors import ConfigError
from streams.order import GroupState
from streams.repartition import Homes
from streams.settings import Settings
from streams.tables import GROUP_PREFIX, changelog_topic, unfinished_rebuilds
from streams.tools import replay
from streams.tools.client import Kafka

TRIES = 10


@dataclass(frozen=True)
class Difference:
    device_id: str
    table: dict[str, Any] | None  # None: not in the table
    replay: dict[str, Any] | None  # None: the replay has no such device

    def fields(self) -> list[str]:
        """The fields that differ, each with both values."""
        table, again = self.table or {}, self.replay or {}
        return [f"{name}: table {_json(table.get(name))}, replay {_json(again.get(name))}"
                for name in sorted(table.keys() | again.keys())
                if table.get(name) != again.get(name)]


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class Snapshot:
    table: dict[str, dict[str, Any]]  # device ID -> record, as comparable
    groups: dict[int, GroupState]  # partition -> where its group had got to
    committed: dict[TopicPartition, int]
    settled: bool  # the offsets did not move while the table was read
    unfinished: frozenset[int] = frozenset()  # partitions a stopped `smi rebuild` left


async def snapshot(settings: Settings) -> Snapshot:
    async with Kafka(settings) as kafka:
        for attempt in range(TRIES):
            before = await _committed(kafka, settings)
            records = await kafka.latest_by_key(changelog_topic(settings))
            after = await _committed(kafka, settings)
            if before == after or attempt == TRIES - 1:
                break
            await asyncio.sleep(0.5)
    table = {k: replay.comparable(v) for k, v in records.items()
             if not k.startswith("~") and v is not None}
    groups = {int(k.removeprefix(GROUP_PREFIX)): GroupState.from_dict(v)
              for k, v in records.items() if k.startswith(GROUP_PREFIX) and v is not None}
    return Snapshot(table, groups, after, before == after, unfinished_rebuilds(records))


async def _committed(kafka: Kafka, settings: Settings) -> dict[TopicPartition, int]:
    offsets = await kafka.admin.list_consumer_group_offsets(settings.app_id)
    names = {settings.topic(n) for n in t.DEVICE_INPUTS}
    return {tp: meta.offset for tp, meta in offsets.items()
            if tp.topic in names and meta.offset >= 0}


def replay_to(records: list[replay.Record], snap: Snapshot, settings: Settings
              ) -> dict[str, dict[str, Any]]:
    """Each partition group's decided input, decided again into a fresh SMI."""
    homes = Homes(settings.partitions)
    home = {id(r): replay.home_of_record(r, homes) for r in records if r.topic != t.CPL}
    smi: dict[str, dict[str, Any]] = {}
    for partition in range(settings.partitions):
        state = snap.groups.get(partition)
        chosen = [r for r in records if _decided(r, home.get(id(r)), partition, state, snap,
                                                 settings)]
        outcome = replay.run(chosen, settings.policy)
        smi.update({k: replay.comparable(v.to_dict(0)) for k, v in outcome.smi.items()})
    return smi


def _decided(record: replay.Record, home: int | None, partition: int,
             state: GroupState | None, snap: Snapshot, settings: Settings) -> bool:
    if state is None:
        return False
    if record.topic == t.CPL:
        applied = state.cpl
        return record.partition < len(applied) and record.offset < applied[record.partition]
    if home != partition:
        return False
    if record.partition != partition:  # forwarded here: taken, or not yet
        rank = t.DEVICE_INPUTS.index(record.topic) + 1
        return record.offset <= state.forwarded.get((record.partition, rank), -1)
    end = snap.committed.get(TopicPartition(settings.topic(record.topic), partition), 0)
    return record.offset < end


def compare(table: dict[str, Any], again: dict[str, Any]) -> list[Difference]:
    return [Difference(k, table.get(k), again.get(k))
            for k in sorted(table.keys() | again.keys()) if table.get(k) != again.get(k)]


async def verify(settings: Settings) -> tuple[list[Difference], Snapshot]:
    await t.check_partitions(settings)  # else every device would differ
    snap = await snapshot(settings)
    refuse_unknowable(snap, settings)
    async with Kafka(settings) as kafka:
        await replay.refuse_cut(kafka, [settings.topic(n) for n in t.INPUTS],
                                "a replay of what is left cannot tell what the group decided")
    records = await replay.read_inputs(settings, show_progress=False)
    return compare(snap.table, replay_to(records, snap, settings)), snap


def refuse_unknowable(snap: Snapshot, settings: Settings) -> None:
    """Raise where the table cannot say what its group decided: no group of that name, or a
    partition with committed input and no record of where its group had got to (a lost or
    emptied changelog, a table of an earlier release). Without this, such a partition would
    count as having decided nothing, and verify would find no difference."""
    if not snap.committed:
        raise ConfigError(f"group {settings.app_id} has committed no input: nothing to verify")
    if snap.unfinished:
        raise ConfigError(
            f"partitions {', '.join(map(str, sorted(snap.unfinished)))} of the table are what "
            "an `smi rebuild` that did not finish left: run `smi rebuild` again")
    lost = sorted({tp.partition for tp, offset in snap.committed.items()
                   if offset > 0 and tp.partition not in snap.groups})
    if lost and snap.settled:  # else a group's first commit may have come after the table
        raise ConfigError(
            f"the table's changelog {changelog_topic(settings)} has no record of where the "
            f"groups of partitions {', '.join(map(str, lost))} had got to, though they "
            "committed input: the table is lost or partial (`smi rebuild` writes it again)")

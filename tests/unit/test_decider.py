"""The worker and ``smi replay`` drive one decider (``streams/decider.py``): on the same input
they make the same SMI and the same corrections, CPL removals among them."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams import topics as t
from streams.backends import backend_of
from streams.repartition import IDLE, UNKNOWN
from streams.settings import Settings
from streams.tables import group_key
from streams.tools import replay
from streams.tools.workload import FIRMWARES, Workload, cpl
from tests.unit.incoming import Message, drive
from tests.unit.test_recent import as_input, owning, partition_of

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(("misrouted", "jittered"), [(False, False), (True, False),
                                                     (True, True)])
def test_the_worker_and_replay_decide_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            misrouted: bool, jittered: bool) -> None:
    """With ``misrouted``, a fifth of the device messages are read on another partition than
    their device's, keyed in lower case or not: they are forwarded home and decided there.
    With ``jittered``, timestamps within a partition go back as well as forward, as from
    producers whose clocks differ: each group still takes its own and its forwarded records
    in partition order, and replay must put them where the group does."""
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=4)
    workload = Workload(300, seed=29, broken=0.01)
    events = list(workload.events(6_000))  # CPL changes and broken messages among them
    events.insert(2_000, cpl(FIRMWARES[0], "Removed"))
    messages = as_input(settings, [*workload.setup(), *events])
    if misrouted:
        messages = _misrouted(messages, settings)
    if jittered:
        rng = random.Random(3)
        messages = [m._replace(timestamp=m.timestamp + rng.randint(-40, 40)) for m in messages]

    processor = owning(settings, 4, monkeypatch)
    asyncio.run(_drive(processor, messages, misrouted))
    table = processor.tables.device_to_record
    live = {d: replay.comparable(v) for d in {m.key.decode().upper() for m in messages
                                              if m.topic != settings.topic(t.CPL)}
            if (v := backend_of(table).get(partition_of(d), d)) is not None}
    pending = processor.emitter.pending
    corrections = Counter(orjson.loads(v)["correction_id"]
                          for (topic, _, _), records in pending.items()
                          if topic == settings.topic(t.CORRECTIONS) for _, v, _, _ in records)

    names = {settings.topic(n): n for n in t.INPUTS}
    records = [replay.Record(names[m.topic], m.partition, m.offset, m.timestamp, m.key, m.value)
               for m in messages]
    again = replay.run(replay.in_order(records, settings.partitions), settings.policy, NOW)
    assert {k: replay.comparable(v.to_dict(0)) for k, v in again.smi.items()} == live
    assert Counter(c.correction_id for c in again.corrections) == corrections
    assert again.outputs[t.CORRECTIONS] == sum(corrections.values()) > 100
    assert Counter(c.cause for c in again.corrections)["cpl-removed"] > 50
    # a removal's corrections cite the CPL message, an inventory's its own
    assert {c.source.topic for c in again.corrections if c.cause == "cpl-removed"} == {
        settings.topic(t.CPL), settings.topic(t.INVENTORY)}
    assert again.accounted["dead_lettered"] == processor.metrics.dead_letters[t.REQUESTS] > 10
    # every input counted once, a CPL removal too, whatever number of groups applied it
    cpl_messages = sum(m.topic == settings.topic(t.CPL) for m in messages)
    assert sum(n for (kind, _), n in processor.metrics.outcomes.items()
               if kind == t.CPL) == cpl_messages > 5


def _misrouted(messages: list[Message], settings: Settings) -> list[Message]:
    """Every fifth device message on the next partition, every other of those keyed in lower
    case; each partition's offsets counted again."""
    offsets: Counter[tuple[str, int]] = Counter()
    out = []
    for n, m in enumerate(messages):
        partition, key = m.partition, m.key
        if m.topic != settings.topic(t.CPL) and n % 5 == 0:
            partition = (partition + 1) % settings.partitions
            key = key.lower() if key is not None and n % 10 == 0 else key
        offset = offsets[(m.topic, partition)]
        offsets[(m.topic, partition)] += 1
        out.append(m._replace(partition=partition, key=key, offset=offset))
    return out


async def _drive(processor: Any, messages: list[Any], forwards: bool = False) -> None:
    processor.decider.now = lambda: NOW
    await drive(processor, messages, forwards)


def test_each_group_keeps_in_the_table_the_watermarks_it_has_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group's state goes into the table with the records it goes with: once every forward
    has been decided, the last watermark of every other group is there too. A restart reads
    an idle one as unknown: the group that said it may have been sent records since, and
    must say again that it has nothing left to forward."""
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=4)
    workload = Workload(100, seed=31)
    messages = _misrouted(as_input(settings, [*workload.setup(), *workload.events(600)]),
                          settings)
    processor = owning(settings, 4, monkeypatch)
    asyncio.run(_drive(processor, messages, forwards=True))
    assert sum(processor.metrics.forwarded.values()) > 50
    backend = backend_of(processor.tables.device_to_record)
    for partition in range(4):
        saved = backend.get(partition, group_key(partition))
        assert saved is not None
        others = sorted((q, rank) for q in range(4) if q != partition for rank in (1, 2, 3))
        assert saved["watermarks"] == [[*source, *IDLE] for source in others]
        state = processor.group_state(partition)
        assert state is not None and state.watermarks == dict.fromkeys(others, UNKNOWN)
        assert state.forwarded  # and how far it took each group's forwards


def test_the_event_loop_turns_while_a_removal_suspends_a_fleet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal over a million devices takes minutes: the worker lets its event loop turn
    every ``REMOVAL_CHUNK`` devices, so that /live and its timers answer meanwhile."""
    monkeypatch.setattr("streams.decider.REMOVAL_CHUNK", 100)
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=4)
    setup = list(Workload(2_000, seed=5).setup())
    processor = owning(settings, 4, monkeypatch)
    seen: list[int] = []

    async def run() -> None:
        await _drive(processor, as_input(settings, setup))
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.append(processor.metrics.corrections["cpl-removed"])
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        removal = as_input(settings, [cpl(FIRMWARES[0], "Removed")], start=len(setup))
        await _drive(processor, removal)
        done.set()
        await watcher

    asyncio.run(run())
    total = processor.metrics.corrections["cpl-removed"]
    assert total == 2_000  # every device ran the removed firmware
    assert [n for n in seen if 0 < n < total]  # and others ran while it was under way

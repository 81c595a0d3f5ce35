"""A backlog decided cold, a backlog decided with a ``kill -9`` halfway, and ``smi replay`` of
the same input all give the same outputs and the same SMI (``streams/order.py``).

The input is written before any worker starts, as it waits after an outage: the CPL, every
device's inventory, then service requests, responses, inventory changes and CPL changes, among
them a removal of the firmware most devices run, 10 ms apart. A worker reads its topics in
whatever order its fetches return them; only deciding each partition group in timestamp order
makes the outcome independent of that order.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams import topics as t
from streams.settings import Settings
from streams.tables import changelog_topic
from streams.tools.client import Kafka, input_topics
from streams.tools.replay import comparable
from streams.tools.workload import FIRMWARES, Message, Workload, cpl
from streams.topics import ensure
from tests.integration.harness import SMI, Worker

pytestmark = pytest.mark.integration

STEP_MS = 10  # between two messages' timestamps
CLOCK_FIELDS = ("at", "accepted_at")  # when a worker made an output: differs between runs


def backlog() -> list[Message]:
    workload = Workload(devices=1_500, seed=23)
    events = list(workload.events(16_000))
    events.insert(6_000, cpl(FIRMWARES[0], "Removed"))  # most devices run it
    events.insert(11_000, cpl(FIRMWARES[0], "Active"))
    return [*workload.setup(), *events]


async def produce(settings: Settings, messages: list[Message], start_ms: int,
                  misrouted: bool = False) -> None:
    """Keyed by device ID, murmur2-partitioned (aiokafka's default, as Java's); or, with
    ``misrouted``, a tenth of the device messages in lower case (key and payload), and a tenth
    placed by a CRC32 partitioner as other clients do; and a tenth of all stamped up to 30 s
    early, as by a producer whose clock is behind (timestamps go back within a partition)."""
    producer = AIOKafkaProducer(acks="all", linger_ms=20, **settings.kafka_client_options())
    await producer.start()
    rng = random.Random(41)
    try:
        for i, m in enumerate(messages):
            key, value, partition = m.key, m.value, None
            if misrouted and m.topic != t.CPL and m.key:
                draw = rng.random()
                if draw < 0.1:
                    key, value = m.key.lower(), m.value.replace(m.key, m.key.lower())
                elif draw < 0.2:
                    partition = zlib.crc32(m.key) % settings.partitions
            early = rng.randrange(30_000) if misrouted and rng.random() < 0.1 else 0
            await producer.send(settings.topic(m.topic), value, key=key, partition=partition,
                                timestamp_ms=start_ms + STEP_MS * i - early)
        await producer.flush()
    finally:
        await producer.stop()


def without_clock(value: Any) -> str:
    return orjson.dumps({k: v for k, v in value.items() if k not in CLOCK_FIELDS},
                        option=orjson.OPT_SORT_KEYS).decode()


async def outcome(settings: Settings, app_id: str) -> dict[str, Any]:
    """Every output (read_committed), as a count of each payload without its clock fields,
    and every device's record in the table's changelog."""
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(app_id, input_topics(settings), timeout=300)
        found: dict[str, Any] = {
            name: Counter(without_clock(v) for _, v, _, _ in
                          await kafka.read_all(settings.topic(name)))
            for name in t.OUTPUTS}
        records = await kafka.smi(settings)
    found["smi"] = {k: comparable(v) for k, v in records.items()}
    return found


async def committed(kafka: Kafka, settings: Settings, app_id: str) -> int:
    """Input offsets committed (the repartition topic's are mostly watermarks)."""
    inputs = {settings.topic(name) for name in t.INPUTS}
    offsets = await kafka.admin.list_consumer_group_offsets(app_id)
    return sum(meta.offset for tp, meta in offsets.items()
               if meta.offset > 0 and tp.topic in inputs)


async def kill_halfway(worker: Worker, total: int) -> None:
    """``kill -9`` once the group has committed a quarter of the input, and before it has
    committed all of it."""
    settings = worker.settings()
    deadline = time.monotonic() + 300
    async with Kafka(settings) as kafka:
        while (done := await committed(kafka, settings, worker.app_id)) < total // 4:
            assert time.monotonic() < deadline, f"only {done} of {total} committed"
            await asyncio.sleep(0.01)
    worker.stop(kill=True)
    assert done < total, f"all {total} committed before the kill: too late"


def replayed(worker: Worker, out: Path) -> dict[str, Any]:
    run = subprocess.run([SMI, "replay", "--policy", "mp105", "--out", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env=worker.settings_env(), check=False)
    assert run.returncode == 0, run.stderr
    lines = (out / "mp105.smi.jsonl").read_text().splitlines()
    corrections = (out / "mp105.corrections.jsonl").read_text().splitlines()
    return {"smi": {r["device_id"]: r for r in map(json.loads, lines)},
            t.CORRECTIONS: Counter(without_clock(json.loads(c)) for c in corrections)}


@pytest.mark.parametrize(("store", "misrouted"), [
    ("memory://", False), ("rocksdb://", False), ("memory://", True), ("rocksdb://", True)])
async def test_a_backlog_a_crash_and_a_replay_give_one_smi(
    store: str, misrouted: bool, kafka_bootstrap: str, worker_factory: Callable[..., Worker],
    tmp_path: Path
) -> None:
    """With ``misrouted``, a fifth of the device messages are not on their device's partition
    (streams/repartition.py): they are forwarded there and decided in the same order; and
    timestamps go back within partitions, where each record is ordered at its partition's
    time (streams/order.py)."""
    env = {"SMI_STORE": store, "SMI_PROCESSING_GUARANTEE": "exactly_once"}
    messages = backlog()
    # the outage ended now (older timestamps would fall to the broker's 7-day retention)
    start_ms = int(time.time() * 1000) - STEP_MS * len(messages)
    runs: list[tuple[Worker, dict[str, Any]]] = []
    for name in ("cold", "killed"):  # the same input under two prefixes
        prefix = f"bl{time.time_ns() % 10**9}{name}."
        settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix)
        await ensure(settings)
        await produce(settings, messages, start_ms, misrouted)  # all there before a worker starts
        worker = worker_factory(prefix, env=env)
        if name == "killed":
            await kill_halfway(worker, len(messages))
            worker.restart()
        runs.append((worker, await outcome(worker.settings(), worker.app_id)))
    (cold, first), (killed, second) = runs
    for worker, _ in runs:  # the order was known throughout: no wait ran out
        assert worker.log_path is not None
        assert "goes on without them" not in worker.log_path.read_text(errors="replace")
    replay = replayed(cold, tmp_path / "replay")
    assert sum(replay[t.CORRECTIONS].values()) > 1_000
    assert any('"cause":"cpl-removed"' in c for c in replay[t.CORRECTIONS])
    for run, found in (("cold", first), ("killed", second)):
        assert _differing(found["smi"], replay["smi"]) == [], f"{run}: SMI differs from replay"
        assert found[t.CORRECTIONS] == replay[t.CORRECTIONS], f"{run}: corrections differ"
    assert sum(first[t.COMMANDS].values()) > 5_000 and len(first["smi"]) == 1_500
    for name in t.OUTPUTS:
        assert second[name] == first[name], f"{name}: the run with a kill -9 differs"
    await changed_by_hand(killed, second["smi"])
    assert "no device differs" in verified(cold, 0)
    assert "1 devices differ" in (found := verified(killed, 1))
    assert f'{HAND_CHANGED}:\n  status: table "Withdrawn", replay ' in found


async def decided(worker: Worker, count: int) -> None:
    """Until ``worker`` has decided ``count`` inputs (its ``/stats``)."""
    deadline = time.monotonic() + 120
    while sum(sum(b.values()) for b in worker.get("/stats")["accounted"].values()) < count:
        assert time.monotonic() < deadline, f"{count} inputs not decided in 120 s"
        await asyncio.sleep(0.02)


async def rebalancing(settings: Settings, group: str) -> None:
    """Until a member has asked to join ``group`` and the group waits for the others."""
    deadline = time.monotonic() + 120
    async with Kafka(settings) as kafka:
        while True:
            [response] = await kafka.admin.describe_consumer_groups([group])
            state = response.groups[0][2]  # error code, group id, state, ...
            if state in ("PreparingRebalance", "CompletingRebalance"):
                return
            assert time.monotonic() < deadline, f"the group stayed {state} for 120 s"
            await asyncio.sleep(0.05)


HAND_CHANGED = "00-DB-03-00-00-00-2A-00"


async def changed_by_hand(worker: Worker, smi: dict[str, Any]) -> None:
    """One device's record in the table's changelog, as if edited by hand."""
    settings = worker.settings()
    record = {**smi[HAND_CHANGED], "status": "Withdrawn", "partition": 0, "history": []}
    async with Kafka(settings) as kafka:
        await kafka.send(changelog_topic(settings), HAND_CHANGED, record)


def verified(worker: Worker, exit_code: int) -> str:
    run = subprocess.run([SMI, "verify"], capture_output=True, text=True, timeout=300,
                         env=worker.settings_env(), check=False)
    assert run.returncode == exit_code, run.stdout + run.stderr
    return run.stdout


def _differing(smi: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """The devices whose records differ, the first ten."""
    return sorted(k for k in smi.keys() | reference.keys() if smi.get(k) != reference.get(k))[:10]


async def test_a_member_joining_a_group_deep_in_a_backlog_changes_nothing(
    kafka_bootstrap: str, worker_factory: Callable[..., Worker], tmp_path: Path
) -> None:
    """A second worker joins the group while the first decides a backlog whose responses all
    come after its requests, so the first has committed none of the responses topic (offset
    0 at most) when the group rebalances (it is held still while the second starts). The
    group's SMI, corrections and ``smi verify`` are replay's. (A fetch that spans a rebalance
    is dropped and read again from the committed offsets; aiokafka seeks back only the
    partitions committed past offset 0, so such a fetch's records of the others were lost:
    requests never decided, their responses held.)"""
    workload = Workload(devices=4_000, seed=29)
    events = list(workload.events(110_000, cpl_changes=False))
    later = [m for m in events if m.topic == t.RESPONSES]
    messages = [*workload.setup(), *(m for m in events if m.topic != t.RESPONSES), *later]
    start_ms = int(time.time() * 1000) - STEP_MS * len(messages)
    prefix = f"bj{time.time_ns() % 10**9}."
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix)
    await ensure(settings)
    await produce(settings, messages, start_ms)
    env = {"SMI_STORE": "rocksdb://", "SMI_PROCESSING_GUARANTEE": "at_least_once",
           "SMI_COMMIT_INTERVAL": "30"}  # what is decided commits at the rebalance
    first = worker_factory(prefix, env=env)
    await decided(first, 15_000)
    # the first is held where it got to while the second starts, so that the second joins
    # before the first reaches the responses, however fast it decides
    assert first.process is not None
    os.kill(first.process.pid, signal.SIGSTOP)
    try:
        second = worker_factory(prefix, env=env, app_id=first.app_id, wait=False)
        await rebalancing(settings, first.app_id)
    finally:
        os.kill(first.process.pid, signal.SIGCONT)
    second.wait_ready()
    async with Kafka(settings) as kafka:
        offsets = await kafka.admin.list_consumer_group_offsets(first.app_id)
    past = {tp.topic for tp, meta in offsets.items() if meta.offset > 0}
    assert settings.topic(t.REQUESTS) in past, "the first worker had decided no request"
    assert settings.topic(t.RESPONSES) not in past, "the second worker joined too late"
    found = await outcome(first.settings(), first.app_id)
    replay = replayed(first, tmp_path / "replay")
    assert _differing(found["smi"], replay["smi"]) == [], "SMI differs from replay"
    # at_least_once: a correction may go out twice, never be missing
    assert set(found[t.CORRECTIONS]) == set(replay[t.CORRECTIONS])
    assert len(found["smi"]) == 4_000 and sum(found[t.COMMANDS].values()) > 20_000
    assert "no device differs" in verified(first, 0)
    assert second.process is not None and second.process.poll() is None

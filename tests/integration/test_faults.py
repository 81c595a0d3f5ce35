"""Faults injected against the real broker: nothing is committed past an output that was not
delivered, and once the cause is gone every input is accounted for."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams import topics as t
from streams.settings import BrokerSettings, Settings
from streams.tables import changelog_topic
from streams.tools import replay
from streams.tools.client import Kafka, input_topics
from streams.tools.workload import Workload
from streams.topics import ensure
from tests.integration.harness import SMI, Worker
from tests.integration.test_backlog import STEP_MS, produce, replayed, without_clock

pytestmark = pytest.mark.integration

BROKEN = 40  # service requests that are not JSON: each is dead-lettered


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_an_output_topic_refusing_writes_holds_every_offset_back(
    guarantee: str, kafka_bootstrap: str, worker_factory: Callable[..., Worker]
) -> None:
    prefix = f"flt{time.time_ns() % 10**9}."
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix)
    deadletter = settings.topic(t.DEADLETTER)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await _refusing_dead_letters(settings, admin)
        worker = worker_factory(prefix, env={"SMI_STORE": "rocksdb://",
                                             "SMI_PROCESSING_GUARANTEE": guarantee}, wait=False)
        log = await _stopped_with_nothing_committed(worker, admin, settings.topic(t.REQUESTS))
        assert "outputs not delivered" in log and deadletter in log, worker.tail()
        assert "MessageSizeTooLarge" in log, worker.tail()  # the broker's reason
        assert "Traceback" not in log, worker.tail()  # explained: a line, not faust's trace
        async with Kafka(settings) as kafka:
            assert await kafka.read_all(deadletter) == []
        # the cause fixed, the same worker again: every input is dead-lettered
        letters = await _dead_lettered_once_fixed(worker, settings, admin)
    finally:
        await admin.close()
    if guarantee == "exactly_once":
        assert len(letters) == BROKEN


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_changelog_refusing_writes_holds_every_offset_back(
    guarantee: str, kafka_bootstrap: str, worker_factory: Callable[..., Worker]
) -> None:
    """The table's changelog refuses the records (each over its max.message.bytes): the
    worker stops with no input committed, and once the cause is gone every device is on the
    SMI."""
    prefix = f"flc{time.time_ns() % 10**9}."
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix, app_id=prefix.rstrip("."))
    changelog = changelog_topic(settings)
    devices = [f"00-DB-12-34-56-78-0C-{n:02X}" for n in range(20)]
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, settings.partitions, 1, topic_configs={
            "cleanup.policy": "compact", "max.message.bytes": "200"})])  # under any record
        await ensure(settings)
        async with Kafka(settings) as kafka:
            for device in devices:
                await kafka.send(settings.topic(t.INVENTORY), device, _inventory(device))
        worker = worker_factory(prefix, env={"SMI_STORE": "rocksdb://",
                                             "SMI_PROCESSING_GUARANTEE": guarantee}, wait=False)
        log = await _stopped_with_nothing_committed(worker, admin, settings.topic(t.INVENTORY))
        assert changelog in log and "MessageSizeTooLarge" in log, worker.tail()
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changelog, {
            "cleanup.policy": "compact", "max.message.bytes": "1048576"})])
        worker.restart()
        async with Kafka(settings) as kafka:
            await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=120)
            table = await kafka.latest_by_key(changelog)
    finally:
        await admin.close()
    assert {d for d in devices if table.get(d, {}).get("status") == "Commissioned"} == set(
        devices)


async def test_a_rebalance_while_outputs_fail_stops_the_worker_at_once(
    kafka_bootstrap: str, worker_factory: Callable[..., Worker]
) -> None:
    """Outputs are refused, and before the worker's next timed commit a second worker joins.
    The commit at the rebalance fails; aiokafka logs a listener's error and goes on, so the
    worker used to join the next generation and carry on until its timer's commit. It stops
    there, with nothing committed, and once the cause is gone every input is dead-lettered."""
    prefix = f"flr{time.time_ns() % 10**9}."
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await _refusing_dead_letters(settings, admin)
        first = worker_factory(prefix, env={"SMI_COMMIT_INTERVAL": "90"})
        await _until(lambda: "were not delivered" in first.tail(400), first)
        joined = time.monotonic()
        second = worker_factory(prefix, wait=False)
        log = await _stopped_with_nothing_committed(first, admin, settings.topic(t.REQUESTS))
        assert time.monotonic() - joined < 45, "carried on until its timer's commit"
        assert "as partitions were revoked" in log, first.tail()
        assert settings.topic(t.DEADLETTER) in log, first.tail()
        await _stopped_with_nothing_committed(second, admin, settings.topic(t.REQUESTS))
        await _dead_lettered_once_fixed(second, settings, admin)
    finally:
        await admin.close()


async def _refusing_dead_letters(settings: Settings, admin: AIOKafkaAdminClient) -> None:
    """The dead-letter topic refuses every record (each over its max.message.bytes), and
    service requests that are not JSON wait on the input."""
    await admin.create_topics([NewTopic(settings.topic(t.DEADLETTER), settings.partitions, 1,
                                        topic_configs={"max.message.bytes": "200"})])
    await ensure(settings)
    await _send_broken(settings)


async def _dead_lettered_once_fixed(worker: Worker, settings: Settings,
                                    admin: AIOKafkaAdminClient) -> list[Any]:
    """The dead-letter topic takes records again and ``worker`` starts again: every input is
    dead-lettered. Returns the dead letters."""
    deadletter = settings.topic(t.DEADLETTER)
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, deadletter, {
        "max.message.bytes": "1048576"})])
    worker.restart()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=120)
        letters = await kafka.read_all(deadletter)
    assert {(v["partition"], v["offset"]) for _, v, _, _ in letters} == await _sent(settings)
    return letters


async def _stopped_with_nothing_committed(worker: Worker, admin: AIOKafkaAdminClient,
                                          topic: str) -> str:
    """The worker's log, once it has stopped with an error and no offset of ``topic``
    committed."""
    assert worker.process is not None and worker.process.wait(timeout=180) != 0
    offsets = await admin.list_consumer_group_offsets(worker.app_id)
    assert sum(m.offset for tp, m in offsets.items()
               if tp.topic == topic and m.offset > 0) == 0, "committed past the failure"
    return worker.log_path.read_text(errors="replace") if worker.log_path else ""


async def _send_broken(settings: Settings) -> None:
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_options())
    await producer.start()
    try:
        for n in range(BROKEN):
            await producer.send(settings.topic(t.REQUESTS), b"not JSON %d" % n,
                                key=b"00-DB-12-34-56-78-%02X-01" % n)
        await producer.flush()
    finally:
        await producer.stop()


async def _sent(settings: Settings) -> set[tuple[int, int]]:
    async with Kafka(settings) as kafka:
        ends = await kafka.end_offsets([settings.topic(t.REQUESTS)])
    return {(tp.partition, offset) for tp, end in ends.items() for offset in range(end)}


async def test_a_second_worker_on_the_same_directory_refuses_and_leaves_the_first_alone(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """Before the lock, the second took the first one's live RocksDB tables for a crashed
    run's and deleted them."""
    first = worker_factory(prefix, env={"SMI_STORE": "rocksdb://"})
    settings = first.settings()
    device = "00-DB-12-34-56-78-0A-01"
    async with Kafka(settings) as kafka:
        await kafka.send(settings.topic(t.INVENTORY), device, _inventory(device))
        await kafka.wait_consumed(first.app_id, input_topics(settings))
    tables = first.data_dir() / first.app_id / "v1" / "tables"
    before = sorted(p.name for p in tables.iterdir())
    second = worker_factory(prefix, env={"SMI_STORE": "rocksdb://",
                                         "SMI_DATA_DIR": str(first.data_dir())}, wait=False)
    assert second.process is not None and second.process.wait(timeout=60) == 1
    assert "is in use by the worker with pid" in second.tail(), second.tail()
    assert "Traceback" not in second.tail()
    assert sorted(p.name for p in tables.iterdir()) == before
    assert first.process is not None and first.process.poll() is None
    assert first.get(f"/devices/{device}")["status"] == "Commissioned"


async def test_a_changelog_cut_short_is_recovered_from_where_it_now_starts(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """Records deleted from the changelog's start while the worker is down (delete-records,
    or retention where someone let the topic be cut): a restart recovers every record that
    remains, and says which partitions lost records. (Its consumer used to skip such a
    partition to its end, and recover none of it.)"""
    worker = worker_factory(prefix)  # a memory store: every start recovers from the changelog
    settings = worker.settings()
    devices = [f"00-DB-12-34-56-78-0B-{n:02X}" for n in range(40)]
    async with Kafka(settings) as kafka:
        for device in devices:
            await kafka.send(settings.topic(t.INVENTORY), device, _inventory(device))
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
        worker.stop()
        changelog = changelog_topic(settings)
        records = [m for m in await kafka.read_all(changelog) if m[0] in devices]
    offsets = {p: sorted(o for _, _, q, o in records if q == p) for p in {m[2] for m in records}}
    cut = {p: found[2] for p, found in offsets.items() if len(found) > 2}  # two gone from each
    assert cut
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        # a compacted topic refuses delete-records: as with retention, the policy must
        # include delete (the worker sets it back to compact when it starts)
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changelog, {
            "cleanup.policy": "compact,delete"})])
        await admin.delete_records({TopicPartition(changelog, p): RecordsToDelete(o)
                                    for p, o in cut.items()})
    finally:
        await admin.close()
    worker.restart()
    kept = {key for key, _, p, o in records if o >= cut.get(p, 0)}
    assert len(kept) == len(devices) - 2 * len(cut)
    for device in devices:
        found = worker.get(f"/devices/{device}", quiet=True)
        assert (found is not None) is (device in kept), device
    log = worker.log_path.read_text(errors="replace") if worker.log_path else ""
    for p, offset in cut.items():
        assert f"changelog {changelog}[{p}] starts at offset {offset}" in log, worker.tail()


def test_a_broker_rebuilt_empty_stops_the_worker_with_one_error(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """The cluster is lost and comes back without the worker's topics: the worker stops and
    says so, where it logged every topic as missing, many times a second, and kept going."""
    from streams import broker
    from tests.conftest import TEST_PORT

    port = TEST_PORT + 50  # a broker of this test's own, to lose
    local = BrokerSettings()
    broker.down(local, port=port, purge=True)
    bootstrap = broker.up(local, Settings(), nodes=1, port=port).bootstrap
    try:
        worker = worker_factory(prefix, bootstrap=bootstrap)
        broker.down(local, port=port, purge=True)
        broker.up(local, Settings(), nodes=1, port=port)  # the same address, nothing on it
        assert worker.process is not None and worker.process.wait(timeout=120) != 0
    finally:
        broker.down(local, port=port, purge=True)
    log = worker.log_path.read_text(errors="replace") if worker.log_path else ""
    assert f"the broker at {bootstrap} no longer has" in log, worker.tail()
    assert log.count("no longer has") <= 3, worker.tail()  # said once, not for ever


async def test_a_lost_changelog_is_refused_then_rebuilt_from_the_input(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """The table's changelog is deleted while the worker is down. It used to start on an
    empty SMI and reject every request unknown-device; it refuses, `smi rebuild` writes the
    table again from the input, and the worker goes on from its committed offsets."""
    worker = worker_factory(prefix)
    settings = worker.settings()
    scenario = json.loads((SCENARIOS / "01-mp105-sr11-2-restores-suspended.json").read_text())
    changelog = changelog_topic(settings)
    before = await _decided_then_table_deleted(worker, scenario)
    refused = subprocess.run([SMI, "worker"], capture_output=True, text=True, timeout=120,
                             env=worker.settings_env(), check=False)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert f"changelog {changelog} is gone" in refused.stderr and "smi rebuild" in refused.stderr
    assert "Traceback" not in refused.stderr
    rebuilt = subprocess.run([SMI, "rebuild"], capture_output=True, text=True, timeout=300,
                             env=worker.settings_env(), check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    async with Kafka(settings) as kafka:
        assert await _table(kafka, changelog) == before
    worker.restart()
    device = scenario["steps"][-1]["value"]["device_id"]
    assert worker.get(f"/devices/{device}")["status"] == before[device]["status"]
    checked = subprocess.run([SMI, "verify"], capture_output=True, text=True, timeout=300,
                             env=worker.settings_env(), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_changelog_partition_emptied_to_its_end_is_refused_then_rebuilt(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """Every record of one changelog partition deleted while the worker is down
    (delete-records to its end, or retention): its end offset stays where it was, so it
    must not pass for a table. The worker refuses to start, `smi verify` says the table is
    lost, `smi rebuild` writes that partition again and leaves the others as they are."""
    from streams.repartition import home_of

    worker = worker_factory(prefix)
    settings = worker.settings()
    scenario = json.loads((SCENARIOS / "01-mp105-sr11-2-restores-suspended.json").read_text())
    device = scenario["steps"][-1]["value"]["device_id"]
    lost = home_of(device, settings.partitions)
    other = next(d for n in range(256) if home_of(d := f"00-DB-12-34-56-78-0D-{n:02X}",
                                                  settings.partitions) != lost)
    changelog = changelog_topic(settings)
    async with Kafka(settings) as kafka:
        for step in scenario["steps"]:
            await kafka.send(settings.topic(step["send"]), step.get("key"), step["value"])
        await kafka.send(settings.topic(t.INVENTORY), other, _inventory(other))
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
        before = await _table(kafka, changelog)
        worker.stop()
        end = (await kafka.end_offsets([changelog]))[TopicPartition(changelog, lost)]
        await kafka.admin.alter_configs([ConfigResource(  # compacted refuses delete-records
            ConfigResourceType.TOPIC, changelog, {"cleanup.policy": "compact,delete"})])
        await kafka.admin.delete_records({TopicPartition(changelog, lost): RecordsToDelete(end)})
    env = worker.settings_env()
    refused = subprocess.run([SMI, "worker"], capture_output=True, text=True, timeout=120,
                             env=env, check=False)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert f"changelog {changelog} is empty in partition {lost}, " in refused.stderr
    checked = subprocess.run([SMI, "verify"], capture_output=True, text=True, timeout=300,
                             env=env, check=False)
    assert checked.returncode == 1 and "the table is lost or partial" in checked.stderr, (
        checked.stdout + checked.stderr)
    rebuilt = subprocess.run([SMI, "rebuild"], capture_output=True, text=True, timeout=300,
                             env=env, check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert f"rebuilt in partitions {lost}:" in rebuilt.stdout, rebuilt.stdout
    worker.restart()
    for each in (device, other):
        assert worker.get(f"/devices/{each}")["status"] == before[each]["status"]
    assert subprocess.run([SMI, "verify"], capture_output=True, text=True, timeout=300,
                          env=env, check=False).returncode == 0


async def test_a_rebuild_that_stops_part_way_is_refused_then_finished(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """A rebuild the broker stops part way (here: the device's record over the changelog's
    max.message.bytes) leaves the partitions it had not finished marked, and so not empty.
    The worker must not start on them, and the next rebuild must write them again and leave
    the finished ones alone."""
    from streams.repartition import home_of

    worker = worker_factory(prefix)
    settings = worker.settings()
    scenario = json.loads((SCENARIOS / "01-mp105-sr11-2-restores-suspended.json").read_text())
    device = scenario["steps"][-1]["value"]["device_id"]
    partial = home_of(device, settings.partitions)
    changelog = changelog_topic(settings)
    before = await _decided_then_table_deleted(worker, scenario)
    async with Kafka(settings) as kafka:
        # a group's state (about 200 bytes) passes, a device's record does not
        await kafka.admin.create_topics([NewTopic(changelog, settings.partitions, 1, topic_configs={
            "cleanup.policy": "compact", "max.message.bytes": "400"})])
    env = worker.settings_env()
    stopped = subprocess.run([SMI, "rebuild"], capture_output=True, text=True, timeout=300,
                             env=env, check=False)
    assert stopped.returncode != 0 and "MessageSizeTooLarge" in stopped.stderr, (
        stopped.stdout + stopped.stderr)
    refused = subprocess.run([SMI, "worker"], capture_output=True, text=True, timeout=120,
                             env=env, check=False)
    assert refused.returncode == 1, refused.stderr[-2000:]
    said = [line for line in refused.stderr.splitlines() if line.startswith("smi: ")]
    assert said and said[-1].startswith(  # the cause, on one line after faust's log
        f"smi: partition {partial} of the SMI table is what an `smi rebuild` that did not "
        "finish left"), refused.stderr[-3000:]
    async with Kafka(settings) as kafka:
        await kafka.admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changelog, {
            "cleanup.policy": "compact", "max.message.bytes": "1048588"})])
    rebuilt = subprocess.run([SMI, "rebuild"], capture_output=True, text=True, timeout=300,
                             env=env, check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    unfinished = ", ".join(map(str, range(partial, settings.partitions)))
    assert f"rebuilt in partitions {unfinished}:" in rebuilt.stdout, rebuilt.stdout
    async with Kafka(settings) as kafka:
        assert await _table(kafka, changelog) == before
    worker.restart()
    assert worker.get(f"/devices/{device}")["status"] == before[device]["status"]
    assert subprocess.run([SMI, "verify"], capture_output=True, text=True, timeout=300,
                          env=env, check=False).returncode == 0


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_worker_paused_past_its_session_writes_nothing_over_the_new_owner(
    guarantee: str, prefix: str, kafka_bootstrap: str, worker_factory: Callable[..., Worker],
    tmp_path: Path
) -> None:
    """``kill -STOP`` a worker that has decided a backlog (under at_least_once, with nothing
    committed yet); more input comes; a second worker takes the partitions once the session
    times out and decides it all; ``kill -CONT``. The paused one's late changelog records
    would land after the new owner's and leave the table behind the input. Under
    at_least_once it asks the group before it sends, and stops; under exactly_once the new
    owner's transactions fence it. Each worker decides a backlog, whose order is known, so
    the outcome is replay's."""
    workload = Workload(devices=300, seed=5)
    setup, events = list(workload.setup()), list(workload.events(6_000, cpl_changes=False))
    before, after = setup + events[:4_000], events[4_000:]
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix, app_id=prefix.rstrip("."))
    start_ms = int(time.time() * 1000) - STEP_MS * (len(setup) + len(events))
    await ensure(settings)
    await produce(settings, before, start_ms)
    env = {"SMI_STORE": "rocksdb://", "SMI_PROCESSING_GUARANTEE": guarantee,
           "SMI_SESSION_TIMEOUT_SECONDS": "6"}
    # at_least_once: its first commit comes long after it has decided the backlog, so it
    # holds every changelog record when it is paused
    held = {"SMI_COMMIT_INTERVAL": "60"} if guarantee == "at_least_once" else {}
    paused = worker_factory(prefix, env={**env, **held})
    await _until(lambda: _decided(paused) >= len(before), paused)
    assert paused.process is not None
    os.kill(paused.process.pid, signal.SIGSTOP)
    try:
        await produce(settings, after, start_ms + STEP_MS * len(before))
        taker = worker_factory(prefix, env=env)  # ready once the paused one is out
        async with Kafka(settings) as kafka:
            await kafka.wait_consumed(taker.app_id, input_topics(settings), timeout=120)
    finally:
        os.kill(paused.process.pid, signal.SIGCONT)
    # it stops (fenced, under exactly_once), or rejoins if it had nothing left to write
    stopped = await asyncio.to_thread(_exit_code, paused, 30)
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(taker.app_id, input_topics(settings), timeout=120)
        smi = {k: replay.comparable(v) for k, v in (await kafka.smi(settings)).items()}
        corrections = Counter(without_clock(v) for _, v, _, _ in
                              await kafka.read_all(settings.topic(t.CORRECTIONS)))
    for worker in (paused, taker):  # the order was known throughout: no wait ran out
        assert worker.log_path is not None
        assert "goes on without them" not in worker.log_path.read_text(errors="replace")
    expected = replayed(taker, tmp_path / "replay")
    assert len(expected["smi"]) == 300
    assert [d for d in expected["smi"] if smi.get(d) != expected["smi"][d]] == []
    if guarantee == "exactly_once":
        assert corrections == expected[t.CORRECTIONS]
    else:  # at least once: the new owner decided the paused one's uncommitted inputs again
        assert set(corrections) == set(expected[t.CORRECTIONS])
    assert taker.process is not None and taker.process.poll() is None
    if guarantee == "at_least_once":
        assert stopped not in (0, None), paused.tail()
        assert "cut off from its group" in paused.tail(400), paused.tail()


def _exit_code(worker: Worker, timeout: float) -> int | None:
    assert worker.process is not None
    try:
        return worker.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _decided(worker: Worker) -> int:
    accounted = worker.get("/stats")["accounted"]
    return sum(sum(counts.values()) for counts in accounted.values())


async def _until(condition: Callable[[], bool], worker: Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.05)


SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


async def _decided_then_table_deleted(worker: Worker, scenario: dict[str, Any]
                                      ) -> dict[str, dict[str, object]]:
    """The scenario decided, the worker stopped and its table's changelog deleted: the table
    it had."""
    settings = worker.settings()
    changelog = changelog_topic(settings)
    async with Kafka(settings) as kafka:
        for step in scenario["steps"]:
            await kafka.send(settings.topic(step["send"]), step.get("key"), step["value"])
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
        before = await _table(kafka, changelog)
        worker.stop()
        await kafka.admin.delete_topics([changelog])
        while changelog in await kafka.admin.list_topics():
            await asyncio.sleep(0.2)
    return before


async def _table(kafka: Kafka, changelog: str) -> dict[str, dict[str, object]]:
    return {k: replay.comparable(v) for k, v in (await kafka.latest_by_key(changelog)).items()
            if not k.startswith("~")}


def _inventory(device: str) -> dict[str, object]:
    return {"device_id": device, "device_type": "ESME", "smets": 2, "manufacturer": "AB01",
            "model": "010A030B", "hardware_version": "0001", "firmware_version": "0002012F",
            "status": "Commissioned", "supplier": "90-B3-D5-1F-30-01-00-00",
            "at": "2026-11-24T08:00:00Z"}

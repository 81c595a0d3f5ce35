"""A worker that restarts rebuilds the SMI from the table's changelog and decides with it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.tables import changelog_topic
from streams.tools.client import Kafka, input_topics
from tests.integration.harness import Worker
from tests.integration.test_cli import SUPPLIER, device, inventory

pytestmark = pytest.mark.integration


async def test_restarted_worker_recovers_the_table(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    first = worker_factory(prefix)
    settings = first.settings()
    devices = range(1, 17)
    async with Kafka(settings) as kafka:
        await _commissioned(kafka, first, devices)
        first.stop()
        second = worker_factory(prefix, app_id=first.app_id)  # memory store: only the changelog
        for n in devices:
            record = second.get(f"/devices/{device(n)}")
            assert record["device_id"] == device(n) and record["status"] == "Commissioned"
        # the recovered record is what the next decision reads: an authorised 11.3 is accepted
        request = {"request_id": f"{SUPPLIER}:{device(1)}:7", "sr": "11.3",
                   "originator": SUPPLIER, "device_id": device(1), "firmware_hash": "AB" * 32,
                   "at": "2026-11-24T08:00:00Z"}
        await kafka.send(settings.topic("duis.service-requests"), device(1), request)
        await kafka.wait_consumed(second.app_id, input_topics(settings))
        commands = await kafka.read_all(settings.topic("duis.device-commands"))
    assert [(v["request_id"], v["retry"]) for _, v, _, _ in commands] == [
        (request["request_id"], False)]
    assert "Error in recovery" not in (second.tail(400) + first.tail(400)), json.dumps(
        second.tail(20))


async def _commissioned(kafka: Kafka, worker: Worker, devices: range) -> None:
    """An inventory record for each device, decided by ``worker``."""
    settings = worker.settings()
    for n in devices:
        await kafka.send(settings.topic("smi.inventory"), device(n), inventory(n))
    await kafka.wait_consumed(worker.app_id, input_topics(settings))


FIRMWARES = ("0002012F", "00020130")
# AlterConfigs replaces a topic's settings: the policy must be said again
COMPACT_SOON = {"cleanup.policy": "compact", "segment.ms": "200",
                "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
                "delete.retention.ms": "100"}


async def _changelog_records(kafka: Kafka, topic: str) -> list[tuple[str | None, Any]]:
    return [(key, value) for key, value, _, _ in await kafka.read_all(topic)]


async def test_recovery_reads_a_compacted_changelog(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """faust #176: recovery used to wait for offsets that compaction had removed."""
    env = {"SMI_PROCESSING_GUARANTEE": "exactly_once"}  # transaction markers take offsets too
    first = worker_factory(prefix, env=env)
    settings = first.settings()
    changelog = changelog_topic(settings)
    devices = range(1, 21)
    async with Kafka(settings) as kafka:
        await kafka.admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changelog,
                                                        COMPACT_SOON)])
        rounds = 30  # each rewrites every record: all but the last round is dead weight
        for number in range(rounds):
            firmware = FIRMWARES[number % 2]
            for n in devices:
                await kafka.send(settings.topic("smi.inventory"), device(n),
                                 {**inventory(n), "firmware_version": firmware})
            await kafka.wait_consumed(first.app_id, input_topics(settings))
            await asyncio.sleep(0.25)  # segments roll, so the cleaner may take them
        deadline = time.monotonic() + 90
        while len(await _changelog_records(kafka, changelog)) >= rounds * len(devices):
            assert time.monotonic() < deadline, "the broker never compacted the changelog"
            await asyncio.sleep(1)
        first.stop()
        second = worker_factory(prefix, env=env, app_id=first.app_id, wait=False)
        second.wait_ready(60)  # a recovery that waits for a compacted offset never gets here
        for n in devices:
            record = second.get(f"/devices/{device(n)}")
            assert record["firmware_version"] == FIRMWARES[1], record


def _recovered(worker: Worker) -> int:
    """How many changelog records the worker's last start recovered."""
    found = re.findall(r"recovered (\d+) changelog records", worker.tail(400))
    assert found, worker.tail(40)
    return int(found[-1])


async def test_rocksdb_recovery_loads_the_changelog_and_a_restart_only_its_tail(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """Recovery reads the changelog in bulk (``streams/recovery.py``): all of it into an empty
    data directory, and only what was written since into one a worker kept."""
    env = {"SMI_STORE": "rocksdb://"}
    first = worker_factory(prefix, env=env)
    settings = first.settings()
    async with Kafka(settings) as kafka:
        await _commissioned(kafka, first, range(1, 17))
        first.stop()
        second = worker_factory(prefix, env=env, app_id=first.app_id)  # an empty directory
        assert second.get(f"/devices/{device(5)}")["status"] == "Commissioned"
        assert _recovered(second) >= 16  # the devices, and where each partition group got to
        await _commissioned(kafka, second, range(17, 18))
        second.stop()
        first.restart()  # its directory has devices 1 to 16
    assert first.get(f"/devices/{device(17)}")["device_id"] == device(17)
    assert first.get(f"/devices/{device(3)}")["status"] == "Commissioned"
    assert 1 <= _recovered(first) < 16  # device 17 and where its partition group got to

"""A worker that restarts rebuilds the SMI from the table's changelog and decides with it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from streams.client import Kafka, input_topics
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
        for n in devices:
            await kafka.send(settings.topic("smi.inventory"), device(n), inventory(n))
        await kafka.wait_consumed(first.app_id, input_topics(settings))
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

"""Bad input at volume: every message is processed, rejected or dead-lettered, and the worker
keeps going."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams import topics as t
from streams.core.rules import SUPPLIER_ONLY_SRS
from streams.tools.client import Kafka, input_topics
from streams.tools.workload import Workload, device_id, supplier_of
from tests.integration.harness import Worker

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("SMI_TEST_VOLUME", "100000"))


async def test_mixed_input_with_one_percent_broken_is_all_accounted_for(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    worker = worker_factory(prefix, env={"SMI_COMMIT_INTERVAL": "0.5"})
    settings = worker.settings()
    workload = Workload(devices=2000, seed=5, broken=0.01)
    suppliers = {device_id(n): supplier_of(n) for n in range(workload.devices)}
    sent: Counter[str] = Counter()
    broken = 0
    unauthorised: set[str] = set()  # SRs only the responsible supplier may send, from another
    producer = AIOKafkaProducer(linger_ms=20, **settings.kafka_client_options())
    await producer.start()
    try:
        for message in (*workload.setup(), *workload.events(EVENTS)):
            await producer.send(settings.topic(message.topic), message.value, key=message.key)
            sent[message.topic] += 1
            broken += message.broken
            if message.topic == t.REQUESTS and not message.broken:
                request = orjson.loads(message.value)
                if (request["sr"] in SUPPLIER_ONLY_SRS
                        and request["originator"] != suppliers[request["device_id"]]):
                    unauthorised.add(request["request_id"])
    finally:
        await producer.stop()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=600)
        dead = await kafka.read_all(settings.topic(t.DEADLETTER))
        rejections = await kafka.read_all(settings.topic(t.REJECTIONS))
        commands = await kafka.read_all(settings.topic(t.COMMANDS))
    assert worker.process is not None and worker.process.poll() is None, "the worker stopped"
    accounted = worker.get("/stats")["accounted"]
    for topic, count in sent.items():
        buckets = accounted[topic]
        assert sum(buckets.values()) == count, f"{topic}: sent {count}, accounted {buckets}"
    assert accounted[t.REQUESTS]["dead_lettered"] == broken == len(dead)
    assert broken > EVENTS * 0.005
    assert all(d[1]["error"] and d[1]["topic"] == t.REQUESTS for d in dead)
    invalid = [r for _, r, _, _ in rejections if r["reason"] == "invalid-request"]
    assert 0 < len(invalid) <= broken  # those whose request_id could still be read
    assert accounted[t.REQUESTS]["rejected"] == len(rejections) - len(invalid)
    # the supplier authorisation rule at volume: no SR from the wrong supplier reaches a device,
    # and no other is refused for it. (An SR read before its device's inventory record, on
    # another topic, is refused as unknown-device instead: Kafka orders partitions, not topics.)
    reasons = {r["request_id"]: r["reason"] for _, r, _, _ in rejections}
    refused = {request for request, reason in reasons.items() if reason == "not-authorised"}
    assert len(unauthorised) > 100 and refused <= unauthorised
    assert {reasons.get(r) for r in unauthorised} <= {"not-authorised", "unknown-device"}
    assert not unauthorised & {c["request_id"] for _, c, _, _ in commands}

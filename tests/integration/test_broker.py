"""The real broker: the project's client and kcat, an independent client, read each other."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.errors import ConfigError
from streams.repartition import home_of
from streams.settings import Settings
from streams.tools.client import Kafka, input_topics
from streams.topics import ensure, repartition_topic
from tests.integration.harness import Worker

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat")
DEVICE = "00-DB-12-34-56-78-99-01"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"


def kcat(*args: str, data: str | None = None) -> str:
    assert KCAT, "kcat is installed by scripts/setup.sh"
    result = subprocess.run(
        [KCAT, *args], input=data, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


async def test_client_and_kcat_round_trip(kafka_bootstrap: str, prefix: str) -> None:
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix)
    topic = settings.topic("roundtrip")
    async with Kafka(settings) as kafka:
        await kafka.admin.create_topics([NewTopic(topic, 1, 1)])  # the broker makes none itself
        await kafka.send(topic, "from-client", {"n": 1})
        kcat("-b", kafka_bootstrap, "-P", "-t", topic, "-K", "|", "-X",
             "partitioner=murmur2_random", data='from-kcat|{"n": 2}\n')
        received = await kafka.read_all(topic)
    assert sorted((k, v["n"]) for k, v, _, _ in received) == [("from-client", 1), ("from-kcat", 2)]
    lines = kcat("-b", kafka_bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%k=%s\\n")
    assert sorted(lines.splitlines()) == ['from-client={"n": 1}', 'from-kcat={"n": 2}']


async def test_readme_kcat_example_gets_an_answer(
    kafka_bootstrap: str, prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """The README's example: an SR sent with kcat, the worker's rejection read with kcat."""
    worker = worker_factory(prefix)
    settings = worker.settings()
    request = (
        f'{{"request_id": "{SUPPLIER}:{DEVICE}:1", "sr": "11.2", "originator": "{SUPPLIER}", '
        f'"device_id": "{DEVICE}", "at": "2026-11-24T08:00:00Z"}}'
    )
    kcat("-b", kafka_bootstrap, "-P", "-t", settings.topic("duis.service-requests"),
         "-X", "partitioner=murmur2_random", "-k", DEVICE, data=request + "\n")
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
    out = kcat("-b", kafka_bootstrap, "-C", "-t", settings.topic("duis.rejections"), "-e", "-q")
    assert '"reason":"unknown-device"' in out
    assert f'"request_id":"{SUPPLIER}:{DEVICE}:1"' in out


async def test_a_topic_the_broker_refuses_to_create_is_an_error_with_its_reason(
    kafka_bootstrap: str, prefix: str
) -> None:
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix, replication_factor=3)
    with pytest.raises(ConfigError, match=r"refused to create .*smi\.inventory: .*replicat"):
        await ensure(settings)


async def test_a_forward_keeps_its_place_in_time_where_the_broker_stamps_records(
    kafka_bootstrap: str, prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """The repartition topic stamps each forward with the time it was written
    (LogAppendTime). A device's inventory record placed on the wrong partition, a minute
    old, must still be decided before its SR11.2 a second later, which sits on the device's
    own partition: the SR is accepted, as replay would have it."""
    settings = Settings(app_id=prefix.rstrip("."), topic_prefix=prefix, broker=kafka_bootstrap)
    async with Kafka(settings) as kafka:
        await kafka.admin.create_topics([NewTopic(
            repartition_topic(settings), settings.partitions, 1,
            topic_configs={"message.timestamp.type": "LogAppendTime"})])
    await ensure(settings)
    home = home_of(DEVICE, settings.partitions)
    start = int(time.time() * 1000) - 60_000
    inventory = {"device_id": DEVICE, "device_type": "ESME", "smets": 2,
                 "manufacturer": "AB01", "model": "010A030B", "hardware_version": "0001",
                 "firmware_version": "0002012F", "status": "Commissioned",
                 "supplier": SUPPLIER, "at": "2026-11-24T08:00:00Z"}
    request = {"request_id": f"{SUPPLIER}:{DEVICE}:1", "sr": "11.2", "originator": SUPPLIER,
               "device_id": DEVICE, "at": "2026-11-24T08:00:01Z"}
    producer = AIOKafkaProducer(**settings.kafka_client_options())
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("smi.inventory"), orjson.dumps(inventory),
                                     key=DEVICE.encode(), timestamp_ms=start,
                                     partition=(home + 1) % settings.partitions)
        await producer.send_and_wait(settings.topic("duis.service-requests"),
                                     orjson.dumps(request), key=DEVICE.encode(),
                                     timestamp_ms=start + 1_000, partition=home)
    finally:
        await producer.stop()
    worker = worker_factory(prefix)
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
        rejections = await kafka.read_all(settings.topic("duis.rejections"))
        commands = await kafka.read_all(settings.topic("duis.device-commands"))
    assert [v["reason"] for _, v, _, _ in rejections] == []
    assert [v["request_id"] for _, v, _, _ in commands] == [request["request_id"]]


async def test_the_repartition_topic_is_stamped_when_written(
    kafka_bootstrap: str, prefix: str
) -> None:
    """So that its retention counts from when a record was forwarded, not from the original's
    time: a backlog older than the retention must still be there for its home to read."""
    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix)
    await ensure(settings)
    async with Kafka(settings) as kafka:
        described = await kafka.admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, repartition_topic(settings))])
    entries = {e[0]: e[1] for e in described[0].resources[0][4]}
    assert entries["message.timestamp.type"] == "LogAppendTime"


async def test_an_aborted_request_is_never_decided_under_at_least_once(
    kafka_bootstrap: str, prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """A producer's aborted transaction is not input, under either guarantee: smi replay and
    smi verify read committed records only, and so does the worker."""
    settings = Settings(app_id=prefix.rstrip("."), topic_prefix=prefix, broker=kafka_bootstrap)
    await ensure(settings)
    requests = settings.topic("duis.service-requests")

    def request(counter: int) -> bytes:
        return orjson.dumps({"request_id": f"{SUPPLIER}:{DEVICE}:{counter}", "sr": "11.2",
                             "originator": SUPPLIER, "device_id": DEVICE,
                             "at": "2026-11-24T08:00:00Z"})

    producer = AIOKafkaProducer(transactional_id=f"{prefix}aborting",
                                **settings.kafka_client_options())
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(requests, request(1), key=DEVICE.encode())
        await producer.begin_transaction()
        await producer.send_and_wait(requests, request(2), key=DEVICE.encode())
        await producer.abort_transaction()
    finally:
        await producer.stop()
    worker = worker_factory(prefix, env={"SMI_PROCESSING_GUARANTEE": "at_least_once"})
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
        rejections = await kafka.read_all(settings.topic("duis.rejections"))
    assert [v["request_id"] for _, v, _, _ in rejections] == [f"{SUPPLIER}:{DEVICE}:1"]

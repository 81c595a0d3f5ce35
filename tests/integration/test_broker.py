"""The real broker: the project's client and kcat, an independent client, read each other."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest
from aiokafka.admin import NewTopic

from streams.errors import ConfigError
from streams.settings import Settings
from streams.tools.client import Kafka, input_topics
from streams.topics import ensure
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

"""Fixtures: a real Kafka broker for the session, and per-test workers and prefixes.

The broker comes, in this order, from ``SMI_BROKER`` / ``KAFKA_BOOTSTRAP_SERVERS`` when set and
answering; else a local KRaft broker started once for the session (``smi kafka up`` on port
``SMI_TEST_KAFKA_PORT``, 29092); else testcontainers where a Docker engine answers.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from streams.broker import Cluster
from streams.settings import BrokerSettings, Settings
from tests.integration.harness import Worker

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# Below Linux's ephemeral range (32768-60999): a client's outgoing connection cannot have
# taken a broker's port before it binds (a node of the cluster once failed so).
TEST_PORT = int(os.environ.get("SMI_TEST_KAFKA_PORT", "29092"))
CLUSTER_PORT = int(os.environ.get("SMI_TEST_CLUSTER_PORT", "29192"))


def _answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("SMI_BROKER") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given and _answers(given):
        yield given
        return
    local = _local_broker()
    if local is not None:
        yield from local
        return
    yield from _testcontainers_broker()


def _local_broker() -> Iterator[str] | None:
    import shutil

    if shutil.which("java") is None or shutil.which("mvn") is None:
        return None

    def run() -> Iterator[str]:
        from streams import broker

        local = BrokerSettings()
        broker.down(local, port=TEST_PORT, purge=True)
        cluster = broker.up(local, Settings(), nodes=1, port=TEST_PORT)
        try:
            yield cluster.bootstrap
        finally:
            broker.down(local, port=TEST_PORT, purge=True)

    return run()


def _testcontainers_broker() -> Iterator[str]:
    port = _free_port()
    try:
        container = apache_kafka(BrokerSettings(), "127.0.0.1", port)
        container.start()
    except Exception as exc:  # no Docker engine answers here
        pytest.fail(f"no Kafka broker: no java/mvn for a local one and no Docker ({exc})")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        container.stop()


def apache_kafka(local: BrokerSettings, host: str, port: int) -> DockerContainer:
    """The ``apache/kafka`` image of the release ``smi kafka up`` runs: one KRaft node.
    (testcontainers' KafkaContainer drives Confluent's image and its start script.)"""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    image, env = apache_kafka_config(local, host, port)
    # the same port inside and out: the broker advertises the address clients connect to
    return (DockerContainer(image).with_envs(**env).with_bind_ports(port, port)
            .waiting_for(LogMessageWaitStrategy("Kafka Server started")))


def apache_kafka_config(local: BrokerSettings, host: str, port: int
                        ) -> tuple[str, dict[str, str]]:
    """The image and its environment, configured like the local broker (streams/broker)."""
    return f"apache/kafka:{local.kafka_version}", {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_NUM_PARTITIONS": "8",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_LOG_CLEANER_BACKOFF_MS": "2000",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[Cluster]:
    """Three combined broker+controller nodes on one machine (RF 3, min ISR 2)."""
    from streams import broker

    local = BrokerSettings()
    broker.down(local, port=CLUSTER_PORT, purge=True)
    cluster = broker.up(local, Settings(), nodes=3, port=CLUSTER_PORT)
    try:
        yield cluster
    finally:
        broker.down(local, port=CLUSTER_PORT, purge=True)


@pytest.fixture
def prefix() -> str:
    """A fresh topic namespace (and group) for one test."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def worker_factory(
    kafka_bootstrap: str, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(prefix: str, env: dict[str, str] | None = None, app_id: str | None = None,
              bootstrap: str | None = None, wait: bool = True) -> Worker:
        worker = Worker(
            bootstrap=bootstrap or kafka_bootstrap,
            app_id=app_id or prefix.rstrip("."),
            prefix=prefix,
            # each its own: two workers of one app must not share a RocksDB directory
            env={"SMI_DATA_DIR": str(tmp_path / f"data-{len(started)}"), **(env or {})},
        )
        started.append(worker)
        return worker.start(tmp_path, wait=wait)

    yield start
    for worker in started:
        worker.stop()

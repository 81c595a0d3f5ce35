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

import pytest

from streams.broker import Cluster
from streams.settings import Settings
from tests.integration.harness import Worker

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

        settings = Settings()
        broker.down(settings, port=TEST_PORT, purge=True)
        cluster = broker.up(settings, nodes=1, port=TEST_PORT)
        try:
            yield cluster.bootstrap
        finally:
            broker.down(settings, port=TEST_PORT, purge=True)

    return run()


def _testcontainers_broker() -> Iterator[str]:
    try:
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer("apache/kafka:4.1.0").with_kraft()
        container.start()
    except Exception as exc:  # no Docker engine answers here
        pytest.fail(f"no Kafka broker: no java/mvn for a local one and no Docker ({exc})")
    try:
        yield container.get_bootstrap_server()
    finally:
        container.stop()


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[Cluster]:
    """Three combined broker+controller nodes on one machine (RF 3, min ISR 2)."""
    from streams import broker

    settings = Settings()
    broker.down(settings, port=CLUSTER_PORT, purge=True)
    cluster = broker.up(settings, nodes=3, port=CLUSTER_PORT)
    try:
        yield cluster
    finally:
        broker.down(settings, port=CLUSTER_PORT, purge=True)


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

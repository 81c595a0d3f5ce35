"""The Docker path, without a Docker engine: the testcontainers fixture and docker-compose.yml
run the `apache/kafka` image (KRaft) of the release `smi kafka up` runs, and the compose
file's two workers reach each other, with healthchecks and a broker volume."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import yaml

from streams.settings import BrokerSettings
from tests.conftest import apache_kafka_config

REPO = Path(__file__).resolve().parents[2]


def test_the_fixture_imports_nothing_deprecated() -> None:
    # testcontainers.kafka warns at import, and pytest's filterwarnings=error fails the run
    source = (REPO / "tests" / "conftest.py").read_text()
    assert "testcontainers.kafka" not in source and "with_kraft" not in source
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for module in ("testcontainers.core.container", "testcontainers.core.wait_strategies"):
            importlib.import_module(module)


def test_the_fixture_runs_one_kraft_node_of_the_local_brokers_release() -> None:
    image, env = apache_kafka_config(BrokerSettings(), "127.0.0.1", 29801)
    assert image == f"apache/kafka:{BrokerSettings().kafka_version}"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:29801"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == ":29801"  # the port clients are told to use
    voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")[1]
    assert listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]] == voter
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert not any("ZOOKEEPER" in name for name in env)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_compose_runs_the_local_brokers_kafka_with_kraft_a_volume_and_a_healthcheck() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{BrokerSettings().kafka_version}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in name for name in env)
    volume, path = kafka["volumes"][0].split(":")
    assert volume in compose()["volumes"] and path == env["KAFKA_LOG_DIRS"]
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])


def test_compose_runs_two_workers_that_reach_each_other() -> None:
    services = compose()["services"]
    workers = {name: s for name, s in services.items() if "build" in s}
    assert len(workers) == 2
    advertised = kafka_listeners(services["kafka"]["environment"])
    hosts = set()
    for name, worker in workers.items():
        env = worker["environment"]
        # SMI_WEB_HOST is where the other worker sends this one's requests: its own name
        assert env["SMI_WEB_HOST"] in (name, worker.get("hostname")) and env["SMI_WEB_HOST"]
        hosts.add(env["SMI_WEB_HOST"])
        assert env["SMI_BROKER"] in advertised
        assert "SMI_APP_ID" not in env  # one group: the same default app id
        assert env["SMI_API_TOKEN"].startswith("${SMI_API_TOKEN:?")  # beyond loopback
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert "/live" in " ".join(worker["healthcheck"]["test"])
        assert worker["volumes"][0].split(":")[1] == env["SMI_DATA_DIR"]
    assert len(hosts) == 2 and "0.0.0.0" not in hosts
    assert len({w["volumes"][0] for w in workers.values()}) == 2  # a data volume each


def kafka_listeners(env: dict[str, str]) -> set[str]:
    return {item.split("://")[1] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}

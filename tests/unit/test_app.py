"""The faust app as built from the settings: topics, tables, agents (no broker needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError

from streams.app import create_app
from streams.emit import Emitter
from streams.errors import DeliveryFailed
from streams.settings import Settings


def build(tmp_path: Path, **overrides: object) -> object:
    return create_app(Settings(data_dir=tmp_path, app_id="unit", topic_prefix="p.", **overrides))


def test_agents_decide_one_event_at_a_time(tmp_path: Path) -> None:
    # concurrency above 1 lets faust commit past an event still in flight (faust #606)
    app = build(tmp_path)
    agents = {name.rsplit(".", 1)[-1]: agent for name, agent in app.agents.items()}  # type: ignore[attr-defined]
    assert set(agents) == {"reconcile_firmware", "track_cpl"}
    assert all(agent.concurrency == 1 for agent in agents.values())


def test_topics_tables_and_policy_come_from_the_settings(tmp_path: Path) -> None:
    app = build(tmp_path, partitions=4, sr11_2_when_suspended=False)
    parts = app.smi  # type: ignore[attr-defined]
    assert set(parts.topics.device_topic.topics) == {
        "p.smi.inventory", "p.duis.service-requests", "p.duis.device-responses", "p.smi.control"}
    assert parts.topics.outputs["smi.status-corrections"].get_topic_name() == (
        "p.smi.status-corrections")
    changelog = parts.tables.device_to_record.changelog_topic
    assert changelog.get_topic_name() == "unit-device_to_record-changelog"
    assert (changelog.key_serializer, changelog.value_serializer) == ("text", "smi")
    assert parts.tables.device_to_record.partitions == 4
    assert parts.processor.policy.sr11_2_when_suspended is False


def test_secrets_are_not_shown(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sasl_password="hunter2", api_token="t0ken")  # type: ignore[arg-type]
    assert "hunter2" not in repr(settings) and "t0ken" not in str(settings.model_dump())


def test_tls_and_sasl_reach_the_faust_app(tmp_path: Path) -> None:
    tls = build(tmp_path, security_protocol="SSL")
    assert tls.conf.broker_credentials.protocol.name == "SSL"  # type: ignore[attr-defined]
    assert tls.conf.broker_credentials.context is not None  # type: ignore[attr-defined]
    sasl = build(tmp_path, security_protocol="SASL_SSL", sasl_username="smi",
                 sasl_password="s3cret")
    credentials = sasl.conf.broker_credentials  # type: ignore[attr-defined]
    assert (credentials.protocol.name, credentials.mechanism.value) == (
        "SASL_SSL", "SCRAM-SHA-512")
    assert credentials.ssl_context is not None and "s3cret" not in repr(credentials)
    assert build(tmp_path).conf.broker_credentials is None  # type: ignore[attr-defined]


async def test_an_undelivered_output_stops_the_commit() -> None:
    emitter = Emitter(app=None, input_topic="in", exactly_once=False)  # type: ignore[arg-type]
    written: list[tuple[str, int, int]] = []
    emitter.on_sent["smi.status-corrections"] = lambda *where: written.append(where)
    loop = asyncio.get_running_loop()
    delivered, lost = loop.create_future(), loop.create_future()
    delivered.set_result(type("Meta", (), {"offset": 41})())
    lost.set_exception(KafkaTimeoutError())
    emitter._delivered(delivered, "smi.status-corrections", 3, 2)
    emitter.check_delivered()  # all delivered: the commit goes on
    emitter._delivered(lost, "smi.status-corrections", 5, 7)
    with pytest.raises(DeliveryFailed, match=r"7 records to smi.status-corrections\[5\]"):
        emitter.check_delivered()
    assert written == [("smi.status-corrections", 3, 42)]
    emitter.check_delivered()  # told once: a restarted worker decides those inputs again
    cancelled = loop.create_future()
    cancelled.cancel()
    emitter._delivered(cancelled, "dcc.alerts", 0, 1)
    with pytest.raises(DeliveryFailed, match=r"dcc.alerts\[0\]"):
        emitter.check_delivered()

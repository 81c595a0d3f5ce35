"""The public scenarios (``tests/scenarios``), end to end: a real worker on the real broker.

Each step is sent only after the worker's group has consumed everything before it (lag zero on
every topic it reads). Then every output topic is read to its end and checked: the expected
messages, in order per key, matching the fields
they name; no other messages; topics not named stay empty; ``smi`` gives final records, read
from the SMI table's changelog topic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams import topics as t
from streams.tables import changelog_topic
from streams.tools.client import Kafka, input_topics
from tests.integration.harness import Worker

REPO = Path(__file__).resolve().parents[2]
SCENARIO_DIR = Path(os.environ.get("SMI_SCENARIOS_DIR", REPO / "tests" / "scenarios"))
SCENARIOS = sorted(SCENARIO_DIR.glob("*.json"))

pytestmark = pytest.mark.integration


def policy_env(policy: dict[str, bool]) -> dict[str, str]:
    return {f"SMI_{name.upper()}": str(value).lower() for name, value in policy.items()}


def matches(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(actual.get(k) == v for k, v in expected.items())


def check_topic(name: str, actual: list[tuple[Any, Any, int, int]], expected: list[dict]) -> None:
    """Each expected message matched by a distinct actual one, in order within each key."""
    assert len(actual) == len(expected), (
        f"{name}: expected {len(expected)} messages, got {len(actual)}: "
        f"{[m[1] for m in actual]}"
    )
    used: set[int] = set()
    last_offset: dict[tuple[Any, int], int] = {}
    for want in expected:
        index = next(
            (i for i, m in enumerate(actual) if i not in used and matches(m[1], want)), None
        )
        assert index is not None, f"{name}: nothing matches {want} in {[m[1] for m in actual]}"
        used.add(index)
        key, _, partition, offset = actual[index]
        assert offset > last_offset.get((key, partition), -1), f"{name}: {want} out of order"
        last_offset[(key, partition)] = offset


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario(
    path: Path, guarantee: str, store: str, prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    scenario = json.loads(path.read_text())
    env = {**policy_env(scenario["policy"]), "SMI_PROCESSING_GUARANTEE": guarantee,
           "SMI_STORE": store}
    worker = worker_factory(prefix, env=env)
    expect = scenario["expect"]
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        for step in scenario["steps"]:
            await kafka.send(settings.topic(step["send"]), step.get("key"), step["value"])
            await kafka.wait_consumed(worker.app_id, input_topics(settings))
        for name in t.OUTPUTS:
            check_topic(name, await kafka.read_all(settings.topic(name)), expect.get(name, []))
        records = await kafka.latest_by_key(changelog_topic(settings))
    for device_id, fields in expect.get("smi", {}).items():
        assert device_id in records, f"{device_id} has no SMI record"
        assert matches(records[device_id], fields), f"{device_id}: {records[device_id]}"
        assert matches(worker.get(f"/devices/{device_id}"), fields)  # what the table serves
    if store == "rocksdb://":
        assert list((worker.data_dir() / worker.app_id).rglob("CURRENT")), "no RocksDB files"


def test_scenarios_found() -> None:
    assert len(SCENARIOS) >= 15, f"expected the public scenarios in {SCENARIO_DIR}"

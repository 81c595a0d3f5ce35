"""``smi replay`` over input recorded on the real broker, against the live worker's output."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.tools.client import Kafka, input_topics
from tests.integration.harness import SMI, Worker

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
STORIES = ("01-mp105-sr11-2-restores-suspended", "03-alternate-sr11-3-retry-aligns-firmware",
           "07-unlisted-firmware-suspends-then-sr11-2-restores",
           "08-duplicate-response-corrects-once")


def replay(worker: Worker, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SMI, "replay", "--out", str(out), *args], capture_output=True,
                          text=True, timeout=300, env=worker.settings_env(), check=False)


def ids(path: Path) -> list[str]:
    return [json.loads(line)["correction_id"] for line in path.read_text().splitlines()]


async def test_replay_gives_the_live_corrections_and_compares_policies(
    prefix: str, worker_factory: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = worker_factory(prefix)  # the default policy: both MP105 switches on
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        for story in STORIES:
            for step in json.loads((SCENARIOS / f"{story}.json").read_text())["steps"]:
                await kafka.send(settings.topic(step["send"]), step["key"], step["value"])
                await kafka.wait_consumed(worker.app_id, input_topics(settings))
        live = [v["correction_id"] for _, v, _, _ in
                sorted(await kafka.read_all(settings.topic("smi.status-corrections")),
                       key=lambda m: (m[2], m[3]))]
    assert len(live) == 7

    first = replay(worker, tmp_path / "a", "--policy", "mp105")
    again = replay(worker, tmp_path / "b", "--policy", "mp105")
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    replayed = ids(tmp_path / "a" / "mp105.corrections.jsonl")
    assert sorted(replayed) == sorted(live)
    assert ids(tmp_path / "b" / "mp105.corrections.jsonl") == replayed

    compared = replay(worker, tmp_path / "c", "--compare")
    assert compared.returncode == 0, compared.stderr
    summaries = {
        name: json.loads((tmp_path / "c" / f"{name}.summary.json").read_text())
        for name in ("baseline", "sr11.2", "retry", "mp105")
    }
    suspended = {n: s["devices_by_status"].get("Suspended", 0) for n, s in summaries.items()}
    # 01 and 08 recover only through SR11.2, 07's SR11.2 response likewise; 03 needs the retry
    assert suspended == {"baseline": 3, "sr11.2": 0, "retry": 3, "mp105": 0}
    causes = summaries["retry"]["corrections_by_cause"]
    assert causes.get("sr11.3-retry-response") == 1 and "sr11.2-response" not in causes
    assert "| devices Suspended | 3 | 0 | 3 | 0 |" in compared.stdout

"""The public scenarios (``tests/scenarios``) through the decider alone, as ``smi replay`` drives
it, without a broker. The worker and replay share the decider, so comparing the two cannot
show a fault in it: here its outputs and records meet what each scenario expects. The same
scenarios run end to end on the real broker in ``tests/integration/test_scenarios.py``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from streams import topics as t
from streams.core.decide import Output
from streams.settings import Settings
from streams.tools import replay
from tests.integration import test_scenarios as end_to_end

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.json"))


def as_records(steps: list[dict[str, Any]]) -> list[replay.Record]:
    """Each step as the broker would hold it, a millisecond after the one before."""
    records = []
    for offset, step in enumerate(steps):
        value = step["value"]
        raw = value.encode() if isinstance(value, str) else json.dumps(value).encode()
        key = step.get("key")
        records.append(replay.Record(step["send"], 0, offset, 1_000 + offset,
                                     key.encode() if key else None, raw))
    return records


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_decider_gives_each_scenarios_outputs_and_records(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = json.loads(path.read_text())
    sent: dict[str, list[tuple[Any, Any, int, int]]] = defaultdict(list)
    counted = replay._Counts.emit

    def emit(self: Any, outputs: Sequence[Output], partition: int) -> None:
        for name, key, payload in outputs:  # everything replay counts, kept whole
            sent[name].append((key, payload.model_dump(mode="json"), 0, len(sent[name])))
        counted(self, outputs, partition)

    monkeypatch.setattr(replay._Counts, "emit", emit)
    outcome = replay.run(as_records(scenario["steps"]), Settings(**scenario["policy"]).policy)
    expect = scenario["expect"]
    for name in t.OUTPUTS:
        end_to_end.check_topic(name, sent[name], expect.get(name, []))
    for device_id, fields in expect.get("smi", {}).items():
        record = outcome.smi[device_id].to_dict(0)
        assert end_to_end.matches(record, fields), f"{device_id}: {record}"

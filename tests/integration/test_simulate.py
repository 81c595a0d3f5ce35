"""``smi simulate --compare`` through the real broker and one real worker per policy."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from streams.tools.simulate import Config, fleet
from tests.integration.harness import SMI, free_port

pytestmark = pytest.mark.integration

DEVICES = 80


def test_compare_shows_what_mp105_buys(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "SMI_BROKER": kafka_bootstrap, "SMI_WEB_PORT": str(free_port()),
           "SMI_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "sim"
    result = subprocess.run(
        [SMI, "simulate", "--devices", str(DEVICES), "--compare", "--follow-up-after", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = {r["policy"]: r for r in json.loads((out / "simulation.json").read_text())}

    # What the seeded fleet says must happen, device by device (not a share of a formula):
    meters = [m for m in fleet(Config(devices=DEVICES)) if not m.terminal]
    first_lost = sum(m.losses[0] for m in meters)
    all_lost = sum(all(m.losses) for m in meters)
    assert first_lost > 0
    wrongly = {name: r["still wrongly Suspended"] for name, r in reports.items()}
    assert wrongly == {"baseline": first_lost, "sr11.2": 0, "retry": all_lost, "mp105": 0}
    assert reports["baseline"]["SRs rejected (a read of every meter at the end)"] == first_lost
    assert reports["mp105"]["follow-up SR11.2"] == first_lost
    assert reports["mp105"]["time to recover (s)"] != "never"
    assert (out / "wrongly-suspended.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| still wrongly Suspended |" in (out / "simulation.md").read_text()

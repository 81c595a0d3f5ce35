"""``smi demo``: a local broker, a worker, the MP105 story played through Kafka, then a
simulated firmware roll-out compared under each policy."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from streams import broker
from streams import topics as t
from streams.settings import BrokerSettings, Settings
from streams.tools import simulate
from streams.tools.client import Kafka, input_topics
from streams.tools.replay import POLICY_SWITCHES
from streams.tools.supervise import start_worker, stop_worker

# the public scenarios (tests/scenarios) ship in the package as streams/scenarios
STORY = resources.files("streams") / "scenarios" / "01-mp105-sr11-2-restores-suspended.json"


def run(base: Settings, devices: int = 2000, out: Path = Path("simulation")) -> int:
    simulate.need_matplotlib()
    cluster = broker.up(BrokerSettings(data_dir=base.data_dir), base)
    print(f"kafka: {cluster.bootstrap} (logs {cluster.nodes[0].log_file})")
    stamp = time.strftime("%Y%m%d%H%M%S")
    settings = base.model_copy(
        update={"broker": cluster.bootstrap, "app_id": f"smi-demo-{stamp}",
                "topic_prefix": f"demo-{stamp}.", "commit_interval": 0.1}
    )
    worker = start_worker(settings)
    try:
        asyncio.run(_play(settings, json.loads(STORY.read_text())))
    finally:
        stop_worker(worker)
    print(f"\nNow a firmware roll-out over {devices:,} meters, once per policy "
          "(each with its own worker):\n")
    reports = simulate.simulate(settings, list(POLICY_SWITCHES), simulate.Config(devices=devices),
                                out)
    print("\n" + simulate.table(reports))
    print(f"report, time series and chart: {out.resolve()}/ (wrongly-suspended.png)")
    _next_steps(settings)
    return 0


async def _play(settings: Settings, story: dict[str, Any]) -> None:
    print(f"\n{story['about']}\n")
    async with Kafka(settings) as kafka:
        for step in story["steps"]:
            value = step["value"]
            print(f"  -> {step['send']:<24} {_brief(value)}")
            await kafka.send(settings.topic(step["send"]), step.get("key"), value)
            await kafka.wait_consumed(settings.app_id, input_topics(settings))
        print()
        for name in t.OUTPUTS:
            for _, value, _, _ in await kafka.read_all(settings.topic(name)):
                print(f"  <- {name:<24} {_brief(value)}")


def _brief(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    fields = ("sr", "request_id", "status", "firmware_version", "reason", "from_status",
              "to_status", "to_firmware", "cause")
    return " ".join(f"{k}={value[k]}" for k in fields if k in value)


def _next_steps(settings: Settings) -> None:
    print(
        "\nWhere to look next:\n"
        f"  kcat -b {settings.broker} -C -t {settings.topic(t.CORRECTIONS)} -e\n"
        f"  kcat -b {settings.broker} -L          # every topic\n"
        f"  SMI_BROKER={settings.broker} SMI_TOPIC_PREFIX={settings.topic_prefix} "
        ".venv/bin/smi replay --compare"
        "   # the demo's input, decided under each policy\n"
        "  .venv/bin/smi simulate --help\n"
        "  .venv/bin/smi kafka status / .venv/bin/smi kafka down\n"
        "  README.md: running the worker on your own topics"
    )

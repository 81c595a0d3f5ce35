"""``smi demo``: a local broker, a worker, and the MP105 story played through Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from streams import broker
from streams import topics as t
from streams.client import Kafka, input_topics
from streams.settings import REPO_ROOT, Settings

STORY = REPO_ROOT / "tests" / "scenarios" / "01-mp105-sr11-2-restores-suspended.json"


def run(base: Settings) -> int:
    cluster = broker.up(base)
    print(f"kafka: {cluster.bootstrap} (logs {cluster.nodes[0].log_file})")
    stamp = time.strftime("%Y%m%d%H%M%S")
    settings = base.model_copy(
        update={"broker": cluster.bootstrap, "app_id": f"smi-demo-{stamp}",
                "topic_prefix": f"demo-{stamp}.", "commit_interval": 0.1}
    )
    worker = _start_worker(settings)
    try:
        asyncio.run(_play(settings, json.loads(STORY.read_text())))
        _next_steps(settings)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return 0


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    log = settings.data_dir / f"{settings.app_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SMI_BROKER": settings.broker, "SMI_APP_ID": settings.app_id,
           "SMI_TOPIC_PREFIX": settings.topic_prefix, "SMI_COMMIT_INTERVAL": "0.1"}
    smi = str(Path(sys.executable).with_name("smi"))
    process = subprocess.Popen([smi, "worker"], env=env, stdout=open(log, "ab"),  # noqa: SIM115
                               stderr=subprocess.STDOUT)
    print(f"worker: {settings.app_id} (log {log}) starting...", end="", flush=True)
    _wait_healthy(settings, process)
    print(" ready")
    return process


def _wait_healthy(
    settings: Settings, process: subprocess.Popen[bytes], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{settings.web_port}/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the worker exited: see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
        print(".", end="", flush=True)
    raise SystemExit("the worker did not become ready: see its log")


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
        f"  kcat -b {settings.broker} -C -t {settings.topic('smi.status-corrections')} -e\n"
        f"  kcat -b {settings.broker} -L          # every topic\n"
        "  .venv/bin/smi kafka status / .venv/bin/smi kafka down\n"
        "  README.md: running the worker on your own topics"
    )

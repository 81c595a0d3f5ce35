"""The Kafka Streams peer (``bench/peers/kstreams``) in the benchmark: build its jar, run it on
a backlog as the worker is run, and compare what it wrote with what the worker wrote.

The peer is timed as the worker is: from ready (Kafka Streams' state RUNNING, the worker's
``/health``) until its group has committed every input offset, and the offsets of its two
repartition topics, to their ends: every output is then on the broker (under at_least_once a
commit flushes the producer first; under exactly_once the outputs commit with the offsets).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import Timed, caught_up, cpu_seconds, timed
from streams import topics as t
from streams.settings import Settings
from streams.tools.client import Kafka
from streams.tools.supervise import stop_worker, worker_env

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "bench" / "peers" / "kstreams"
JAR = PEER / "target" / "smi-kstreams-peer.jar"
# Kafka Streams names its internal topics <application.id>-<name>-repartition
REPARTITION_TOPICS = ("devices", "cpl-broadcast")
EXAMPLES = 5  # differences shown of each kind


def build() -> tuple[Path | None, str]:
    """The peer's jar, built unless it is newer than its sources; or None and why not."""
    mvn, java = shutil.which("mvn"), shutil.which("java")
    if mvn is None or java is None:
        missing = " and ".join(n for n, p in (("mvn", mvn), ("java", java)) if p is None)
        return None, f"{missing} not found: install a JDK 17 and Maven to run the peer"
    sources = [PEER / "pom.xml", *(PEER / "src").rglob("*.java")]
    if JAR.exists() and JAR.stat().st_mtime > max(p.stat().st_mtime for p in sources):
        return JAR, "up to date"
    errors = ""
    for offline in (True, False):  # offline when Maven has every artifact already
        command = [mvn, "-B", "-q", *(["-o"] if offline else []), "-f", str(PEER / "pom.xml"),
                   "package"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return JAR, "built offline" if offline else "built"
        errors = done.stdout[-2000:] + done.stderr[-2000:]
    return None, f"mvn package failed:\n{errors}"


def repartition_topics(settings: Settings) -> list[str]:
    return [f"{settings.app_id}-{name}-repartition" for name in REPARTITION_TOPICS]


def merged_properties(properties: dict[str, str] | None) -> dict[str, str]:
    """A run's Kafka Streams properties under those of ``SMI_KSTREAMS_PROPERTIES``."""
    given = json.loads(os.environ.get("SMI_KSTREAMS_PROPERTIES") or "{}")
    return {**(properties or {}), **given}


def start(settings: Settings, jar: Path, timeout: float = 180,
          properties: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the peer with the worker's settings (every ``SMI_`` variable); return once Kafka
    Streams says RUNNING. ``properties``: Kafka Streams properties of this run, under those
    of ``SMI_KSTREAMS_PROPERTIES``."""
    log_file = settings.data_dir / f"{settings.app_id}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = worker_env(settings, SMI_STATE_DIR=str(settings.data_dir / "kstreams" /
                                                 settings.app_id),
                     SMI_KSTREAMS_PROPERTIES=json.dumps(merged_properties(properties)))
    with open(log_file, "ab") as out:
        process = subprocess.Popen(["java", "-Xmx1g", "-jar", str(jar)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the peer exited: see {log_file}")
        if b"smi-kstreams: state RUNNING" in log_file.read_bytes():
            return process
        time.sleep(0.2)
    stop_worker(process)
    raise SystemExit(f"the peer did not start in {timeout:.0f}s: see {log_file}")


async def rate(settings: Settings, total: int, jar: Path) -> Timed:
    """The peer on the ``total`` messages of a backlog: events per second, CPU per event."""
    process = start(settings, jar)
    started, cpu = time.perf_counter(), cpu_seconds(process.pid)
    try:
        topics = [settings.topic(n) for n in t.INPUTS] + repartition_topics(settings)
        await caught_up(settings, total, process, topics)
        return timed(total, time.perf_counter() - started, cpu_seconds(process.pid) - cpu)
    finally:
        stop_worker(process)


async def outputs(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every output message of a run (read_committed), by contract topic."""
    async with Kafka(settings) as kafka:
        return {name: [value for _, value, _, _ in await kafka.read_all(settings.topic(name))]
                for name in t.OUTPUTS}


def summary(out: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What a run wrote, in forms two runs can be compared by (no clock readings)."""
    corrections = out[t.CORRECTIONS]
    commands = out[t.COMMANDS]
    return {
        "corrections": len(corrections),
        "corrections_by_cause": dict(Counter(c["cause"] for c in corrections)),
        "commands": len(commands),
        "commands_by_sr": dict(Counter(
            c["sr"] + (f" retry={c['retry']}" if "retry" in c else "") for c in commands)),
        "rejections_by_reason": dict(Counter(r["reason"] for r in out[t.REJECTIONS])),
        "alerts": len(out[t.ALERTS]),
        "dead_letters": len(out[t.DEADLETTER]),
    }


def _keyed(out: dict[str, list[dict[str, Any]]]) -> dict[str, Counter[tuple[Any, ...]]]:
    """Each output as a comparable tuple, counted (a repeat would show)."""
    return {
        "correction": Counter(
            (c["correction_id"], c["device_id"], c["cause"], c["from_status"], c["to_status"],
             c["from_firmware"], c["to_firmware"], c["source"]["topic"],
             c["source"]["partition"], c["source"]["offset"]) for c in out[t.CORRECTIONS]),
        "command": Counter((c["request_id"], c["sr"], c.get("retry")) for c in out[t.COMMANDS]),
        "rejection": Counter((r["request_id"], r["device_id"], r["reason"], r["response_code"])
                             for r in out[t.REJECTIONS]),
        "alert": Counter((a["device_id"], a["gpf_id"], a["smi_firmware_version"],
                          a["gpf_firmware_version"], a["source"]["offset"])
                         for a in out[t.ALERTS]),
        "dead letter": Counter((d["topic"], d["partition"], d["offset"])
                               for d in out[t.DEADLETTER]),
    }


def compare(worker: dict[str, list[dict[str, Any]]], peer: dict[str, list[dict[str, Any]]]
            ) -> dict[str, Any]:
    """Where the peer's outputs differ from the worker's on the same input: per kind, how many
    only one of them wrote, with a few examples. Both read the same messages at the same
    partitions and offsets, so correction IDs must be equal too."""
    a, b = _keyed(worker), _keyed(peer)
    differences: dict[str, Any] = {}
    for kind in a:
        only_worker, only_peer = a[kind] - b[kind], b[kind] - a[kind]
        if only_worker or only_peer:
            differences[kind] = {
                "only_worker": sum(only_worker.values()), "only_peer": sum(only_peer.values()),
                "worker_examples": [list(k) for k in list(only_worker)[:EXAMPLES]],
                "peer_examples": [list(k) for k in list(only_peer)[:EXAMPLES]]}
    return {"equal": not differences, "worker": summary(worker), "peer": summary(peer),
            "differences": differences}


def read_outputs(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    return asyncio.run(outputs(settings))

"""How the worker's cost grows with the fleet, on RocksDB: peak RSS and recovery time.

For each fleet size: the CPL, one inventory record per device and a tenth as many events again
go to topics of their own; a worker (RocksDB, at_least_once) works through them, and its peak
resident set (``VmHWM``) is read when its group has caught up. For the largest fleet, the
worker is then stopped, its data directory deleted, and a new worker timed from start to
ready: a whole table recovered from its changelog. It must hold every device afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import caught_up, worker_stats
from streams import topics as t
from streams.settings import Settings
from streams.tools.client import Kafka, input_topics
from streams.tools.progress import Progress
from streams.tools.supervise import start_worker, stop_worker
from streams.tools.workload import FIRMWARES, Workload, cpl


async def fill(settings: Settings, devices: int, events: int) -> int:
    await t.ensure(settings)
    workload = Workload(devices, seed=8)
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=262_144,
                                **settings.kafka_client_options())
    await producer.start()
    progress = Progress(f"filling {devices:,} devices", devices + events + 3)
    count = 0
    try:
        for m in (*workload.setup(), *workload.events(events, cpl_changes=False)):
            await producer.send(settings.topic(m.topic), m.value, key=m.key)
            count += 1
            if count % 10_000 == 0:
                progress.advance(10_000)
    finally:
        await producer.stop()
        progress.close()
    return count


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_fleet(settings: Settings, devices: int) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    total = asyncio.run(fill(settings, devices, devices // 10))
    process = start_worker(settings, quiet=True)
    started = time.perf_counter()
    try:
        asyncio.run(caught_up(settings, total, process))
    except BaseException:
        stop_worker(process)
        raise
    seconds = time.perf_counter() - started
    return {"devices": devices, "events": total, "events_per_second": round(total / seconds),
            "peak_rss_mib": round(peak_rss_mib(process.pid))}, process


def mass_removal(settings: Settings) -> dict[str, Any]:
    """Remove the CPL entry most of the fleet runs and time the suspension of every device."""
    async def remove() -> float:
        async with Kafka(settings) as kafka:
            m = cpl(FIRMWARES[0], "Removed")
            started = time.perf_counter()
            await kafka.producer.send_and_wait(settings.topic(m.topic), m.value, key=m.key)
            await kafka.wait_consumed(settings.app_id, input_topics(settings), timeout=3600)
            return time.perf_counter() - started

    before = worker_stats(settings)["corrections_by_cause"].get("cpl-removed", 0)
    seconds = asyncio.run(remove())
    suspended = worker_stats(settings)["corrections_by_cause"].get("cpl-removed", 0) - before
    return {"suspended": suspended, "seconds": round(seconds, 1),
            "devices_per_second": round(suspended / seconds)}


def recover(settings: Settings, devices: int, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Stop the worker, empty its data directory and time a new one until it is ready."""
    stop_worker(process)
    shutil.rmtree(settings.data_dir / settings.app_id, ignore_errors=True)
    started = time.perf_counter()
    process = start_worker(settings, quiet=True, timeout=3600)
    seconds = time.perf_counter() - started
    try:
        held = sum(worker_stats(settings)["devices_by_status"].values())
        rss = peak_rss_mib(process.pid)
    finally:
        stop_worker(process)
    return {"devices": devices, "recovered": held, "seconds": round(seconds, 1),
            "peak_rss_mib": round(rss)}


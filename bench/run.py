"""The benchmark: ``.venv/bin/python bench/run.py [--events N] [--devices N]``.

One run, one local broker, the same input for every contender:
1. kcat consuming the input topics (the native ceiling);
2. plain aiokafka: consume, orjson decode, produce (the Python ceiling);
3. the worker end to end, under each configuration (store x processing guarantee).
Each is reported in events per second and as a ratio to (2). Results go to
``bench/results/<date>.json`` and ``.md``; the machine is described in both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import broker  # noqa: E402
from streams import topics as t  # noqa: E402
from streams.client import Kafka, input_topics  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.supervise import start_worker, stop_worker  # noqa: E402
from streams.workload import Workload  # noqa: E402

PORT = int(os.environ.get("SMI_BENCH_KAFKA_PORT", "39592"))
CONFIGS = [("memory://", "at_least_once"), ("rocksdb://", "at_least_once"),
           ("rocksdb://", "exactly_once")]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def fill(settings: Settings, devices: int, events: int) -> int:
    """Write the input once; every contender reads this same input."""
    workload = Workload(devices, seed=6, broken=0.001)
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=262_144,
                                **settings.kafka_client_options())
    await producer.start()
    count = 0
    try:
        for m in (*workload.setup(), *workload.events(events)):
            await producer.send(settings.topic(m.topic), m.value, key=m.key)
            count += 1
    finally:
        await producer.stop()
    return count


def kcat_rate(settings: Settings, total: int) -> float:
    kcat = shutil.which("kcat")
    if kcat is None:
        return float("nan")
    names = [settings.topic(n) for n in t.INPUTS]
    started = time.perf_counter()
    for name in names:
        subprocess.run([kcat, "-b", settings.broker, "-C", "-t", name, "-e", "-q", "-o",
                        "beginning", "-f", "%s\n"], stdout=subprocess.DEVNULL, check=True)
    return total / (time.perf_counter() - started)


async def aiokafka_rate(settings: Settings, total: int) -> float:
    """consume + orjson.loads + produce, the least a Python processor has to do."""
    names = [settings.topic(n) for n in t.INPUTS]
    consumer = AIOKafkaConsumer(*names, auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=f"bench-passthrough-{time.time_ns()}",
                                max_partition_fetch_bytes=4 << 20,
                                **settings.kafka_client_options())
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=262_144,
                                **settings.kafka_client_options())
    await consumer.start()
    await producer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batch.values():
                for m in messages:
                    with contextlib.suppress(orjson.JSONDecodeError):  # ~0.1% broken input
                        orjson.loads(m.value or b"null")
                    await producer.send(settings.topic("bench.sink"), m.value, key=m.key)
                seen += len(messages)
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return total / (time.perf_counter() - started)


async def worker_rate(settings: Settings, total: int) -> float:
    """Start a worker on the filled input and time it until its group has caught up."""
    process = start_worker(settings, quiet=True)
    started = time.perf_counter()
    try:
        async with Kafka(settings) as kafka:
            await kafka.wait_consumed(settings.app_id, input_topics(settings), timeout=3600)
        return total / (time.perf_counter() - started)
    finally:
        stop_worker(process)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "kafka": Settings().kafka_version,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=20_000)
    args = parser.parse_args()
    base = Settings()
    cluster = broker.up(base, port=PORT)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = base.model_copy(update={
        "broker": cluster.bootstrap, "topic_prefix": f"bench-{stamp}.",
        "data_dir": ROOT / ".data" / "bench", "web_port": 16166})
    asyncio.run(_create_topics(settings))
    log(f"filling {args.events:,} events over {args.devices:,} devices...")
    total = asyncio.run(fill(settings, args.devices, args.events))
    results: dict[str, Any] = {"machine": machine(), "events": total, "devices": args.devices}
    log("kcat...")
    results["kcat"] = kcat_rate(settings, total)
    log("aiokafka pass-through...")
    results["aiokafka"] = asyncio.run(aiokafka_rate(settings, total))
    for store, guarantee in CONFIGS:
        name = f"worker {store.rstrip(':/')} {guarantee}"
        log(f"{name}...")
        run = settings.model_copy(update={"store": store, "processing_guarantee": guarantee,
                                          "app_id": f"bench-{stamp}-{len(results)}"})
        results[name] = asyncio.run(worker_rate(run, total))
    write(results, stamp)
    return 0


async def _create_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    await t.ensure(settings)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic("bench.sink"), settings.partitions,
                                            settings.replication_factor)])
    finally:
        await admin.close()


def write(results: dict[str, Any], stamp: str) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    ceiling = results["aiokafka"]
    rows = [f"| {k} | {v:,.0f} | {v / ceiling:.2f} |" for k, v in results.items()
            if isinstance(v, float)]
    table = "\n".join([
        f"Machine: {results['machine']}; {results['events']:,} events over "
        f"{results['devices']:,} devices.", "",
        "| contender | events/s | ratio to aiokafka |", "|---|---|---|", *rows, ""])
    (out / f"{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark: ``.venv/bin/python bench/run.py [--events N] [--devices N] [--sections ...]``.

One run, one local broker, the same input for every throughput contender:
1. kcat consuming the input topics (the native ceiling);
2. plain aiokafka: consume, orjson decode, produce (the Python ceiling);
3. the worker end to end, under each configuration (store x processing guarantee); and a
   configuration with ``*N`` runs N workers in one group, timed from their launch, with the
   same configuration ``*1`` timed that way too for the comparison (how it scales out);
4. replay (``smi replay``'s engine) over the same input;
5. the Kafka Streams peer (``bench/peers/kstreams``, Java), against the worker under each
   processing guarantee: each on a backlog of its own, timed the same way, reported as the
   worker-to-peer ratio beside each one's ratio to (2), with the two runs' outputs compared
   (``bench/peer.py``).
Each is reported in events per second and as a ratio to (2); each worker run is compared with
the mean of runs of (2) just before and just after it, and ``--rounds N`` runs every worker
contender N times in turn and reports the medians. Then, each on input of its own:
6. latency from input to output at a fixed offered rate (p50, p99), and at the highest rate
   once more with two workers in a group;
7. the worker's peak RSS (RocksDB) as the fleet grows, and the time to recover the largest
   fleet's table from its changelog into an empty data directory.
Results go to ``bench/results/<date>.json`` and ``.md``; the machine is described in both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import TypeAdapter, ValidationError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import peer  # noqa: E402
from bench.common import (  # noqa: E402
    Timed,
    caught_up,
    cpu_seconds,
    run_main,
    timed,
    worker_stats,
)
from bench.latency import WARMUP_SECONDS, offer  # noqa: E402
from streams import broker  # noqa: E402
from streams import topics as t  # noqa: E402
from streams.settings import BrokerSettings, Settings  # noqa: E402
from streams.tools.client import Kafka  # noqa: E402
from streams.tools.supervise import (  # noqa: E402
    member_settings,
    spawn_worker,
    start_worker,
    stop_worker,
    wait_healthy,
    worker_env,
)
from streams.tools.workload import Workload  # noqa: E402

PORT = int(os.environ.get("SMI_BENCH_KAFKA_PORT", "29592"))
WEB_PORT = int(os.environ.get("SMI_BENCH_WEB_PORT", "16166"))  # the workers' (a group's: and up)
CONFIGS = [("memory://", "at_least_once"), ("rocksdb://", "at_least_once"),
           ("rocksdb://", "exactly_once")]
FLEETS = ["rocksdb://at_least_once*1", "rocksdb://at_least_once*2"]  # workers in one group
PEER_GUARANTEES = ("at_least_once", "exactly_once")  # the peer against the worker on RocksDB
# Kafka Streams' producers linger 100 ms by default (its throughput default), which would be
# most of the peer's latency; the worker's do not linger at all. 5 ms is what a team tuning
# for latency would try first (docs/decisions.md).
PEER_LATENCY_PROPERTIES = {"producer.linger.ms": "5"}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def fill(settings: Settings, devices: int, events: int, setup: bool = True) -> int:
    """Write the input: the CPL and every device's inventory (``setup``), then ``events``.
    Seeded, so every contender gets the same messages. The events have no CPL changes: each
    removal suspends a third of the fleet, which would make the run a measure of removals. A
    mass removal is timed on its own (``bench/scale.py``).

    Each message is stamped 1 ms after the one before, ending now: stamped by the clock, many
    share a millisecond, and the worker orders those by topic rather than as written, so two
    fills of the same messages were decided differently."""
    workload = Workload(devices, seed=6, broken=0.001)
    messages = [*(workload.setup() if setup else ()),
                *workload.events(events, cpl_changes=False)]
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=262_144,
                                **settings.kafka_client_options())
    await producer.start()
    start = int(time.time() * 1000) - len(messages)
    count = 0
    try:
        for m in messages:
            await producer.send(settings.topic(m.topic), m.value, key=m.key,
                                timestamp_ms=start + count)
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


async def aiokafka_rate(settings: Settings, total: int) -> Timed:
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
    started, cpu = time.perf_counter(), cpu_seconds()
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
        return timed(total, time.perf_counter() - started, cpu_seconds() - cpu)
    finally:
        await consumer.stop()
        await producer.stop()


async def worker_rate(settings: Settings, total: int, faust_only: bool = False) -> Timed:
    """Start a worker (or, with ``faust_only``, bench/faust_passthrough.py) on the filled input
    and time it from ready until its group has caught up. A worker also says how many
    corrections it made, so that runs can be seen to have done the same work."""
    process = start_passthrough(settings) if faust_only else start_worker(settings, quiet=True)
    started, cpu = time.perf_counter(), cpu_seconds(process.pid)
    try:
        await caught_up(settings, total, process)
        return timed(total, time.perf_counter() - started, cpu_seconds(process.pid) - cpu,
                      None if faust_only else _corrections(settings))
    finally:
        stop_worker(process)


def worker_on_events(settings: Settings, total: int, workers: int | None = None) -> Timed:
    """The worker timed on the ``total`` messages of a backlog (:func:`backlog`); with
    ``workers``, that many in one group (:func:`group_rate`)."""
    if workers:
        return asyncio.run(group_rate(settings, total, workers))
    return asyncio.run(worker_rate(settings, total))


async def group_rate(settings: Settings, total: int, workers: int) -> Timed:
    """``workers`` workers in one group, timed from their launch, start-up and rebalances
    included: the group has consumed events before its last member is ready, so timing from
    ready would flatter it."""
    members = group_members(settings, workers)
    started = time.perf_counter()
    processes = start_group(members)
    try:
        await caught_up(settings, total, processes[0])
        seconds = time.perf_counter() - started
        cpu = sum(cpu_seconds(process.pid) for process in processes)  # start-up included
        made = [_corrections(member) for member in members]
        return timed(total, seconds, cpu, {k: sum(m[k] for m in made) for k in made[0]})
    finally:
        for process in processes:
            stop_worker(process)


def group_members(settings: Settings, workers: int) -> list[Settings]:
    """The settings of each worker of a group, as ``smi worker --processes`` gives them."""
    return [member_settings(settings, n) for n in range(workers)]


def start_group(members: list[Settings]) -> list[subprocess.Popen[bytes]]:
    """Every member started at once (the group forms once), then each waited for."""
    spawned = [spawn_worker(member) for member in members]
    try:
        for member, (process, log_file) in zip(members, spawned, strict=True):
            wait_healthy(member, process, log_file, quiet=True)
    except BaseException:
        for process, _ in spawned:
            stop_worker(process)
        raise
    return [process for process, _ in spawned]


def backlog(settings: Settings, devices: int, events: int) -> int:
    """On topics of its own, the whole input (the CPL, the inventory, then the events), all
    there before the worker starts, as after an outage; its count. The worker decides each
    partition group in timestamp order, so it does the same work whatever order it fetches
    the topics in (the corrections it made are reported beside its rate)."""
    asyncio.run(_create_topics(settings))
    return asyncio.run(fill(settings, devices, events))


class Config(NamedTuple):
    """A worker contender: ``rocksdb://exactly_once``; ``*2`` after it for two workers in a
    group; ``+name=value`` for a setting of its own, e.g. ``+commit_interval=1``."""

    store: str
    guarantee: str
    workers: int | None = None
    overrides: Mapping[str, Any] = MappingProxyType({})  # shared, so read-only

    @classmethod
    def parse(cls, text: str) -> Config:
        body, *settings = text.split("+")
        body, _, workers = body.partition("*")
        split = body.index("//") + 2
        overrides = dict(s.split("=", 1) for s in settings)
        for name, value in overrides.items():  # checked and typed as the worker would
            if (field := Settings.model_fields.get(name)) is None:
                raise SystemExit(f"--configs {text}: there is no setting {name!r}")
            # with its bounds (ge=1), which Annotated needs at least one of
            typed: Any = (Annotated[field.annotation, *field.metadata] if field.metadata
                          else field.annotation)
            try:
                overrides[name] = TypeAdapter(typed).validate_python(value)
            except ValidationError as exc:
                raise SystemExit(f"--configs {text}: {name}: {exc.errors()[0]['msg']}") from None
        return cls(body[:split], body[split:], int(workers) if workers else None, overrides)

    @property
    def name(self) -> str:
        name = f"worker {self.store.rstrip(':/')} {self.guarantee}"
        if self.workers:
            name += f", {self.workers} in a group, from launch"
        return name + "".join(f", {k}={v}" for k, v in self.overrides.items())


def _corrections(settings: Settings) -> dict[str, int]:
    by_cause = worker_stats(settings)["corrections_by_cause"]
    return {"corrections": sum(by_cause.values()), "cpl-removed": by_cause.get("cpl-removed", 0)}


def start_passthrough(settings: Settings) -> subprocess.Popen[bytes]:
    log_file = settings.data_dir / f"{settings.app_id}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "faust_passthrough.py"), "worker", "-l", "info",
             "--web-port", str(settings.web_port)],
            env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT)
    wait_healthy(settings, process, log_file, quiet=True)
    return process


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "kafka": BrokerSettings().kafka_version,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}


def environment() -> dict[str, str]:
    """The worker settings this run took from the environment (the workers inherit them),
    secrets left out: a figure is only comparable with one measured under the same."""
    secret = ("TOKEN", "PASSWORD", "KEY")
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith("SMI_") and not any(word in name for word in secret)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--sections", default="throughput,replay,peer,latency,scale",
                        help="comma-separated: throughput, replay, peer, latency, scale")
    parser.add_argument("--rates", default="500,2000,5000",
                        help="offered events/s for the latency runs, comma-separated")
    parser.add_argument("--seconds", type=float, default=20, help="latency run length")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS,
                        help="seconds of latency load before the timed ones, not counted")
    parser.add_argument("--group-workers", type=int, default=2,
                        help="workers in one group for a last latency run, RocksDB "
                        "at_least_once at the highest rate (0: none)")
    parser.add_argument("--latency-peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the Kafka Streams peer at each rate, each guarantee "
                        "(the same load on the same machine)")
    parser.add_argument("--configs", default=",".join([*(f"{s}{g}" for s, g in CONFIGS),
                                                        *FLEETS]),
                        help="worker configurations (throughput), e.g. memory://at_least_once;"
                        " rocksdb://at_least_once*2 is two workers in one group")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each worker contender, in turn; each run is compared "
                        "with aiokafka pass-throughs just before and after it, medians reported")
    parser.add_argument("--fleets", default="100000,1000000", help="fleet sizes (scale)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    sections = set(args.sections.split(","))
    base = Settings()
    cluster = broker.up(BrokerSettings(), base, port=PORT)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = base.model_copy(update={
        "broker": cluster.bootstrap, "topic_prefix": f"bench-{stamp}.",
        "data_dir": ROOT / ".data" / "bench", "web_port": WEB_PORT})
    results: dict[str, Any] = {"machine": machine(), "sections": sorted(sections),
                               "environment": environment()}
    if sections & {"throughput", "replay"}:
        configs = [Config.parse(c) for c in args.configs.split(",")]
        throughput(settings, args.events, args.devices, sections, configs, args.rounds,
                   results)
    if "peer" in sections:
        peer_section(settings, args.events, args.devices, args.rounds, results)
    if "latency" in sections:
        rates = [int(r) for r in args.rates.split(",")]
        results["latency"] = [latency_run(settings, stamp, store, guarantee, rate, args)
                              for store, guarantee in CONFIGS[1:] for rate in rates]
        if args.group_workers > 1:  # does a group keep up where one worker does not?
            results["latency"].append(latency_run(settings, stamp, *CONFIGS[1], max(rates),
                                                  args, args.group_workers))
        if args.latency_peer:  # is the target within reach on this machine at all?
            results["latency"] += peer_latency_runs(settings, stamp, rates, args)
    if "scale" in sections:
        results["scale"] = scale_runs(settings, stamp, [int(n) for n in args.fleets.split(",")])
    write(results, stamp)
    return 0


def throughput(settings: Settings, events: int, devices: int, sections: set[str],
               configs: list[Config], rounds: int, results: dict[str, Any]) -> None:
    asyncio.run(_create_topics(settings))
    log(f"filling {events:,} events over {devices:,} devices...")
    total = asyncio.run(fill(settings, devices, events))
    results.update(events=total, devices=devices, rates={})
    rates = results["rates"]
    log("kcat...")
    rates["kcat"] = kcat_rate(settings, total)
    log("aiokafka pass-through...")
    cpu = results["cpu_us"] = {}
    rates["aiokafka"], cpu["aiokafka"], _ = asyncio.run(aiokafka_rate(settings, total))
    log("faust pass-through...")
    rates["faust pass-through"], cpu["faust pass-through"], _ = asyncio.run(worker_rate(
        settings.model_copy(update={"app_id": f"{settings.topic_prefix}faust"}), total, True))
    work = results.setdefault("work", {})
    if "throughput" in sections:
        runs = contender_runs(settings, total, devices, events, configs, rounds, work)
        results["runs"] = runs
        for name, paired in runs.items():
            rates[name] = statistics.median(r["rate"] for r in paired)
        for key, field in (("ratios", "ratio"), ("cpu_us", "cpu_us"),
                           ("cpu_ratios", "cpu_ratio")):
            results.setdefault(key, {}).update({name: statistics.median(r[field] for r in paired)
                                                for name, paired in runs.items()})
    if "replay" in sections:
        log("replay...")
        rates["replay (read + decide, in process)"] = asyncio.run(replay_rate(settings))


def contender_runs(settings: Settings, filled: int, devices: int, events: int,
                   configs: list[Config], rounds: int, work: dict[str, Any]
                   ) -> dict[str, list[dict[str, float]]]:
    """Each contender ``rounds`` times, in turn, each run paired with aiokafka pass-throughs
    measured just before and just after it (their mean): this machine's speed drifts by a
    third within an hour, so a ratio to a baseline taken minutes earlier moved with the drift,
    not with the code, and one pass-through of a few seconds moved with the moment."""
    names = contender_names(configs)
    runs: dict[str, list[dict[str, float]]] = {}
    number = 0
    for round_ in range(1, rounds + 1):
        for config, name in zip(configs, names, strict=True):
            number += 1
            log(f"{name}, round {round_} of {rounds}...")
            run = settings.model_copy(update={
                "store": config.store, "processing_guarantee": config.guarantee,
                "topic_prefix": f"{settings.topic_prefix}w{number}.",
                "app_id": f"{settings.topic_prefix}w{number}", **config.overrides})
            total = backlog(run, devices, events)
            before = asyncio.run(aiokafka_rate(settings, filled))
            timed = worker_on_events(run, total, config.workers)
            work.setdefault(name, []).append(timed.made)  # the same in every round, or a bug
            after = asyncio.run(aiokafka_rate(settings, filled))
            runs.setdefault(name, []).append(_paired(timed, before, after))
    return runs


def _paired(timed: Timed, before: Timed, after: Timed) -> dict[str, float]:
    """A run against the mean of the aiokafka pass-throughs around it: rate, and CPU per
    message."""
    rate, cpu = (before.rate + after.rate) / 2, (before.cpu_us + after.cpu_us) / 2
    return {"rate": timed.rate, "aiokafka": rate, "ratio": timed.rate / rate,
            "cpu_us": timed.cpu_us, "aiokafka_cpu_us": cpu, "cpu_ratio": timed.cpu_us / cpu}


def peer_section(settings: Settings, events: int, devices: int, rounds: int,
                 results: dict[str, Any]) -> None:
    """The Kafka Streams peer against the worker (RocksDB), under each guarantee, ``rounds``
    times in turn: each run on a backlog of its own of the same messages, paired with aiokafka
    pass-throughs just before and after it, as in :func:`contender_runs`; then the two runs'
    outputs compared."""
    jar, how = peer.build()
    if jar is None:
        log(f"peer: skipped: {how}")
        results["peer"] = {"skipped": how}
        return
    log(f"peer: jar {how}")
    base = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}peer."})
    asyncio.run(_create_topics(base))
    log(f"peer: filling {events:,} events over {devices:,} devices...")
    filled = asyncio.run(fill(base, devices, events))
    runs: dict[str, list[dict[str, float]]] = {}
    comparisons: dict[str, list[dict[str, Any]]] = {}
    number = 0
    for round_ in range(1, rounds + 1):
        for guarantee in PEER_GUARANTEES:
            made: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for who in ("worker", "peer"):
                number += 1
                name = f"{who} {guarantee}"
                log(f"peer section: {name}, round {round_} of {rounds}...")
                run = base.model_copy(update={
                    "store": "rocksdb://", "processing_guarantee": guarantee,
                    "topic_prefix": f"{base.topic_prefix}{who[0]}{number}.",
                    "app_id": f"{base.topic_prefix}{who[0]}{number}"})
                total = backlog(run, devices, events)
                before = asyncio.run(aiokafka_rate(base, filled))
                run_ = (worker_on_events(run, total) if who == "worker"
                        else asyncio.run(peer.rate(run, total, jar)))
                after = asyncio.run(aiokafka_rate(base, filled))
                runs.setdefault(name, []).append(_paired(run_, before, after))
                made[who] = peer.read_outputs(run)
            comparison = peer.compare(made["worker"], made["peer"])
            comparisons.setdefault(guarantee, []).append(comparison)
            log(f"peer section: outputs {'equal' if comparison['equal'] else 'DIFFER'}")
    results["peer"] = {"events": filled, "devices": devices, "runs": runs,
                       "comparisons": comparisons}


def contender_names(configs: list[Config]) -> list[str]:
    """Each configuration's name; one given again is named by its position, so that its runs
    are reported on their own."""
    seen: set[str] = set()
    names = []
    for position, config in enumerate(configs, 1):
        name = config.name
        names.append(f"{name} (run {position})" if name in seen else name)
        seen.add(name)
    return names


async def replay_rate(settings: Settings) -> float:
    from streams.tools import replay

    started = time.perf_counter()
    records = await replay.read_inputs(settings, show_progress=False)
    replay.run(records, settings.policy)
    return len(records) / (time.perf_counter() - started)


def latency_run(settings: Settings, stamp: str, store: str, guarantee: str, rate: int,
                args: argparse.Namespace, workers: int = 1,
                jar: Path | None = None) -> dict[str, Any]:
    """The worker (or with ``jar``, the Kafka Streams peer) under a steady offered load."""
    who = "kstreams" if jar else store.rstrip(":/")
    name = f"{who} {guarantee}" + (f", {workers} workers" if workers > 1 else "")
    log(f"latency, {name}, {rate:,}/s for {args.seconds:.0f}s...")
    tag = f"lat-{'peer-' if jar else ''}{guarantee}-{rate}-{workers}"
    run = settings.model_copy(update={
        "store": store, "processing_guarantee": guarantee,
        "topic_prefix": f"bench-{stamp}-{tag}.", "app_id": f"bench-{stamp}-{tag}"})
    workload = Workload(args.devices, seed=9)
    asyncio.run(_setup(run, workload))
    properties = peer.merged_properties(PEER_LATENCY_PROPERTIES) if jar else None
    processes = ([peer.start(run, jar, properties=properties)] if jar
                 else start_group(group_members(run, workers)))
    topics = ([run.topic(n) for n in t.INPUTS] + peer.repartition_topics(run)) if jar else None
    try:
        asyncio.run(caught_up(run, topics=topics))
        return {"config": name, "commit_interval": run.commit_interval,
                **asyncio.run(offer(run, workload, rate, args.seconds, args.warmup,
                                    stamped=jar is None, pids=[p.pid for p in processes])),
                **({"peer_properties": properties} if properties else {})}
    finally:
        for process in processes:
            stop_worker(process)


def peer_latency_runs(settings: Settings, stamp: str, rates: list[int],
                      args: argparse.Namespace) -> list[dict[str, Any]]:
    """The Kafka Streams peer under the same loads as the worker."""
    jar, how = peer.build()
    if jar is None:
        log(f"latency, peer: skipped: {how}")
        return []
    return [latency_run(settings, stamp, "rocksdb://", guarantee, rate, args, jar=jar)
            for guarantee in PEER_GUARANTEES for rate in rates]


async def _setup(settings: Settings, workload: Workload) -> None:
    await t.ensure(settings)
    async with Kafka(settings) as kafka:
        for m in workload.setup():
            await kafka.producer.send(settings.topic(m.topic), m.value, key=m.key)
        await kafka.producer.flush()


def scale_runs(settings: Settings, stamp: str, fleets: list[int]) -> dict[str, Any]:
    from bench import scale

    runs: list[dict[str, Any]] = []
    process = None
    try:  # a failed section must not leave its worker running (and holding the web port)
        for devices in fleets:
            log(f"scale: {devices:,} devices on RocksDB...")
            run = settings.model_copy(update={
                "store": "rocksdb://", "processing_guarantee": "at_least_once",
                "topic_prefix": f"bench-{stamp}-scale-{devices}.",
                "app_id": f"bench-{stamp}-scale-{devices}"})
            result, process = scale.run_fleet(run, devices)
            runs.append(result)
            if devices != fleets[-1]:
                stop_worker(process)
        log(f"a CPL removal over {fleets[-1]:,} devices...")
        removal = scale.mass_removal(run)
        log(f"recovering {fleets[-1]:,} devices from the changelog...")
        assert process is not None
        recovery = scale.recover(run, fleets[-1], process)
    finally:
        if process is not None:
            stop_worker(process)  # does nothing to one that has stopped
    growth = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"] - 1 if len(runs) > 1 else None
    return {"fleets": runs, "rss_growth": growth, "removal": removal, "recovery": recovery}


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
    table = "\n".join([*report(results), ""])
    (out / f"{stamp}.md").write_text(table)
    print(table)


def report(results: dict[str, Any]) -> list[str]:
    """The results as the Markdown ``write`` puts beside them."""
    lines = [f"Machine: {results['machine']}.", ""]
    if env := results.get("environment"):
        lines += ["Settings from the environment: "
                  + ", ".join(f"{k}={v}" for k, v in env.items()) + ".", ""]
    lines += _throughput_lines(results)
    lines += _peer_lines(results.get("peer"))
    if latency := results.get("latency"):
        first = latency[0]
        tuned = next((r["peer_properties"] for r in latency if r.get("peer_properties")), None)
        lines += ["", f"Latency: {first.get('seconds', 0):g} s timed at each rate, after "
                  f"{first.get('warmup_seconds', 0):g} s of the same load not counted."
                  + (f" The Kafka Streams peer ran with {tuned}." if tuned else "")
                  + " To the producer: from the send to the answer handed to the worker's"
                  " producer, fetching and deciding included (the rest is the produce, the"
                  " commit under exactly_once and the read). CPU: what the answering process"
                  " used (every thread) while the timed load was sent, per event offered, and"
                  " how many cores that kept busy.",
                  "", "| latency | offered/s | requests | answered | p50 ms | p99 ms | max ms "
                  "| to the producer p50 / p99 ms | sender late, max ms "
                  "| CPU us/event (cores) |",
                  "|---|---|---|---|---|---|---|---|---|---|",
                  *(f"| {r['config']} | {r['offered_per_second']:,} | {r['requests']:,} | "
                    f"{r['answered']:,} | {r.get('p50_ms')} | {r.get('p99_ms')} | "
                    f"{r.get('max_ms')} | {_handover_cell(r)} | {r.get('sender_lag_max_ms', '-')} "
                    f"| {_latency_cpu_cell(r)} |" for r in latency)]
    if scale := results.get("scale"):
        lines += ["", "| devices | events | events/s | peak RSS MiB |", "|---|---|---|---|",
                  *(f"| {f['devices']:,} | {f['events']:,} | {f['events_per_second']:,} | "
                    f"{f['peak_rss_mib']:,} |" for f in scale["fleets"]),
                  "", f"RSS growth: {scale['rss_growth']}; CPL removal: {scale['removal']}; "
                  f"recovery: {scale['recovery']}"]
    return lines


def _throughput_lines(results: dict[str, Any]) -> list[str]:
    if not (rates := results.get("rates")):
        return []
    ceiling, work = rates["aiokafka"], results.get("work", {})
    ratios, runs = results.get("ratios", {}), results.get("runs", {})
    return [f"Throughput: {results['events']:,} messages over {results['devices']:,} devices"
            " (the CPL, the inventory, then the events). Each worker is timed on the whole"
            " backlog, from ready; its work is in the last column. A worker's ratio is to"
            " aiokafka pass-throughs measured just before and after it; with several rounds,"
            " the medians, and each run's ratio in the fourth column. CPU is the contender's"
            " own (user and system, every thread) per message, and a worker's against those"
            " pass-throughs' (how many times theirs): it moves less with the machine's drift"
            " than a rate.",
            "", "| contender | events/s | ratio to aiokafka | each run | CPU us/message (x"
            " aiokafka's) | corrections, each run (of them by CPL removals) |",
            "|---|---|---|---|---|---|",
            *(f"| {k} | {v:,.0f} | {ratios.get(k, v / ceiling):.2f} | {_each(runs.get(k))} | "
              f"{_cpu_cell(results, k)} | {_work(work.get(k))} |" for k, v in rates.items()),
            "", *_exactly_once_lines(runs)]


def _cpu_cell(results: dict[str, Any], name: str) -> str:
    cpu = results.get("cpu_us", {}).get(name)
    if cpu is None:
        return "-"
    times = results.get("cpu_ratios", {}).get(name)
    return f"{cpu:,.0f}" + (f" ({times:.1f}x)" if times is not None else "")


def _exactly_once_lines(runs: dict[str, list[dict[str, float]]]) -> list[str]:
    """exactly_once against at_least_once as the issue states it, rate against rate: the
    medians, and round by round (runs next to each other, so under the same drift); then as
    ratios to their own aiokafka baselines, for a machine whose speed moved between them."""
    lines = []
    for name, paired in runs.items():
        alo = runs.get(name.replace("exactly_once", "at_least_once"))
        if "exactly_once" not in name or not alo:
            continue
        median = statistics.median(r["rate"] for r in paired) / statistics.median(
            r["rate"] for r in alo)
        each = ", ".join(f"{e['rate'] / a['rate']:.2f}" for e, a in zip(paired, alo, strict=True))
        # the same, each rate first divided by the aiokafka runs beside it: a drift of the
        # machine's speed between the two contenders then cancels out
        beside = statistics.median(r["ratio"] for r in paired) / statistics.median(
            r["ratio"] for r in alo)
        lines.append(f"{name}: {median:.2f}x of at_least_once (median rates; by round {each}); "
                     f"{beside:.2f}x against the aiokafka runs beside each")
    return [*lines, ""] if lines else []


def _peer_lines(section: dict[str, Any] | None) -> list[str]:
    """The worker against the Kafka Streams peer: rates, the worker-to-peer ratio beside each
    one's ratio to aiokafka (medians), and whether their outputs were the same."""
    if not section:
        return []
    if "skipped" in section:
        return ["", f"Kafka Streams peer: skipped ({section['skipped']})."]
    runs = section["runs"]
    lines = ["", f"Kafka Streams peer against the worker (RocksDB): {section['events']:,} messages"
             f" over {section['devices']:,} devices, each run on a backlog of its own, timed from"
             " ready until its group has committed every input (the peer: and its repartition"
             " topics); ratios to aiokafka pass-throughs just before and after each run,"
             " medians over the rounds; CPU per message of each one's process (user and"
             " system, every thread).", "",
             "| guarantee | worker events/s | peer events/s | worker / peer | worker / aiokafka |"
             " peer / aiokafka | CPU us/message, worker / peer | outputs the same |",
             "|---|---|---|---|---|---|---|---|"]
    for guarantee, compared in section["comparisons"].items():
        worker, kstreams = runs[f"worker {guarantee}"], runs[f"peer {guarantee}"]
        w = statistics.median(r["rate"] for r in worker)
        p = statistics.median(r["rate"] for r in kstreams)
        same = ", ".join("yes" if c["equal"] else "no" for c in compared)
        lines.append(f"| {guarantee} | {w:,.0f} | {p:,.0f} | {w / p:.2f} | "
                     f"{statistics.median(r['ratio'] for r in worker):.2f} | "
                     f"{statistics.median(r['ratio'] for r in kstreams):.2f} | "
                     f"{_cpu_pair(worker, kstreams)} | {same} |")
    for guarantee, compared in section["comparisons"].items():
        for n, c in enumerate(compared, 1):
            for kind, d in c["differences"].items():
                lines.append(f"- {guarantee}, round {n}, {kind}s: {d['only_worker']} only from"
                             f" the worker (e.g. {d['worker_examples'][:2]}), {d['only_peer']}"
                             f" only from the peer (e.g. {d['peer_examples'][:2]})")
    return lines


def _cpu_pair(worker: list[dict[str, float]], peer: list[dict[str, float]]) -> str:
    """Median CPU per message of each (runs from before this column have none)."""
    if not all("cpu_us" in r for r in (*worker, *peer)):
        return "-"
    w, p = (statistics.median(r["cpu_us"] for r in runs) for runs in (worker, peer))
    return f"{w:,.0f} / {p:,.0f}"


def _latency_cpu_cell(row: dict[str, Any]) -> str:
    if "cpu_us_per_event" not in row:  # runs from before this column
        return "-"
    return f"{row['cpu_us_per_event']:,.0f} ({row['cpu_cores']:.2f})"


def _handover_cell(row: dict[str, Any]) -> str:
    if "to_producer_p50_ms" not in row:
        return "-"
    return f"{row['to_producer_p50_ms']} / {row['to_producer_p99_ms']}"


def _each(runs: list[dict[str, float]] | None) -> str:
    if not runs:
        return "-"
    return ", ".join(f"{r['ratio']:.2f} ({r['rate']:,.0f}/{r['aiokafka']:,.0f})" for r in runs)


def _work(work: list[dict[str, int] | None] | None) -> str:
    """Each run's corrections (of them by CPL removals)."""
    made = [w for w in work or () if w]
    return ", ".join(f"{w['corrections']:,} ({w['cpl-removed']:,})" for w in made) or "-"


if __name__ == "__main__":
    sys.exit(run_main(main))

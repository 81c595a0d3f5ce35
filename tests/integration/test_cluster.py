"""Several workers on a three-node cluster: scale-out, a worker killed, a broker lost.

Every run is compared with one worker's run over the same input (same seed, its own topics):
the same corrections (by ``correction_id``, none twice) and the same final SMI. The input is
``Workload(stable=True)``: SR11.2 and SR11.3 and their responses. It goes in causal chunks: a
device only answers a command the worker has sent, so each chunk holds SRs and the responses
to the previous chunk's SRs, and the next chunk waits until the group has consumed it. Without
that, how a worker interleaves the request and response topics decides the outcome (see
docs/operations.md), and no two runs need agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import orjson
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.client import CoordinationType

from streams import broker
from streams import topics as t
from streams.broker import Cluster, Node
from streams.settings import BrokerSettings, Settings
from streams.tools.client import Kafka, input_topics
from streams.tools.workload import Message, Workload
from tests.integration.harness import Worker

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DEVICES, EVENTS, CHUNKS = 1000, 24_000, 4
CLUSTER_ENV = {"SMI_REPLICATION_FACTOR": "3", "SMI_MIN_INSYNC_REPLICAS": "2",
               "SMI_PROCESSING_GUARANTEE": "exactly_once", "SMI_COMMIT_INTERVAL": "0.5"}
Outcome = tuple[list[str], dict[str, tuple[str, str]]]  # correction IDs, SMI state


def workload_chunks() -> list[list[Message]]:
    """The CPL and inventory; then CHUNKS chunks of SRs, each with the responses to the SRs of
    the chunk before; then the responses to the last chunk's SRs."""
    workload = Workload(DEVICES, seed=11, stable=True)
    setup, events = list(workload.setup()), list(workload.events(EVENTS))
    requests = [m for m in events if m.topic == t.REQUESTS]
    size = -(-len(requests) // CHUNKS)
    chunk_of = {_request_id(m): i // size for i, m in enumerate(requests)}
    chunks: list[list[Message]] = [requests[i:i + size] for i in range(0, len(requests), size)]
    chunks.append([])
    for m in events:
        if m.topic == t.RESPONSES:
            chunks[chunk_of[_answered(m)] + 1].append(m)
    return [setup, *chunks]


def _request_id(message: Message) -> str:
    return str(orjson.loads(message.value)["request_id"])


def _answered(response: Message) -> str:
    target, originator, counter = orjson.loads(response.value)["response_id"].split(":")
    return f"{originator}:{target}:{counter}"


async def send(settings: Settings, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=10,
                                **settings.kafka_client_options())
    await producer.start()
    try:
        for m in messages:
            await producer.send(settings.topic(m.topic), m.value, key=m.key)
    finally:
        await producer.stop()


def deliver(worker: Worker, chunk: list[Message], wait: bool = True) -> None:
    """Send a chunk; with ``wait``, return once the group has consumed it."""
    settings = worker.settings()

    async def run() -> None:
        await send(settings, chunk)
        if wait:
            await consumed(worker)

    asyncio.run(run())


async def consumed(worker: Worker) -> None:
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=300)


async def outcome(worker: Worker) -> Outcome:
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=300)
        corrections = await kafka.read_all(settings.topic(t.CORRECTIONS))
        records = await kafka.smi(settings)
    smi = {k: (v["status"], v["firmware_version"]) for k, v in records.items()}
    return [c["correction_id"] for _, c, _, _ in corrections], smi


async def group_coordinator(worker: Worker, cluster: Cluster) -> Node:
    """The node that coordinates the worker's group: under exactly_once every commit of the
    worker's transactions goes to it too (TxnOffsetCommit)."""
    client = AIOKafkaClient(**worker.settings().kafka_client_options())
    await client.bootstrap()
    try:
        node_id = await client.coordinator_lookup(CoordinationType.GROUP, worker.app_id)
    finally:
        await client.close()
    return next(node for node in cluster.nodes if node.node_id == node_id)


@pytest.fixture(scope="module")
def reference(kafka_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Outcome]:
    """One worker, the whole input: what every other run must equal."""
    worker = Worker(kafka_cluster.bootstrap, "ref-cluster", "ref-cluster.", dict(CLUSTER_ENV))
    worker.start(tmp_path_factory.mktemp("reference"))
    try:
        for chunk in workload_chunks():
            deliver(worker, chunk)
        ids, smi = asyncio.run(outcome(worker))
    finally:
        worker.stop()
    assert len(ids) > 1000 and len(set(ids)) == len(ids)
    assert {s for s, _ in smi.values()} >= {"Commissioned", "Suspended"}
    yield ids, smi


def same_as_reference(run: Outcome, reference: Outcome) -> None:
    ids, smi = run
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} corrections emitted twice"
    assert set(ids) == set(reference[0]), (
        f"missing {len(set(reference[0]) - set(ids))}, extra {len(set(ids) - set(reference[0]))}"
    )
    differing = [k for k in reference[1] if smi.get(k) != reference[1][k]]
    assert not differing, f"{len(differing)} devices differ, e.g. {differing[:3]}"


def cluster_workers(
    worker_factory: Callable[..., Worker], prefix: str, cluster: Cluster, count: int,
    env: dict[str, str] | None = None,
) -> list[Worker]:
    env = {**CLUSTER_ENV, **(env or {})}
    workers = [worker_factory(prefix, env=env, bootstrap=cluster.bootstrap, wait=False)]
    workers += [worker_factory(prefix, env=env, bootstrap=cluster.bootstrap,
                               app_id=workers[0].app_id, wait=False) for _ in range(count - 1)]
    for worker in workers:
        worker.wait_ready(120)
    return workers


def test_scale_out_equals_one_worker(
    kafka_cluster: Cluster, reference: Outcome, prefix: str,
    worker_factory: Callable[..., Worker],
) -> None:
    workers = cluster_workers(worker_factory, prefix, kafka_cluster, 2)
    for number, chunk in enumerate(workload_chunks()):
        if number == 3:  # a third worker joins mid-stream
            workers.append(worker_factory(prefix, env=CLUSTER_ENV, app_id=workers[0].app_id,
                                          bootstrap=kafka_cluster.bootstrap, wait=False))
            deliver(workers[0], chunk, wait=False)
            workers[-1].wait_ready(120)
            asyncio.run(consumed(workers[0]))
        else:
            deliver(workers[0], chunk)
    same_as_reference(asyncio.run(outcome(workers[0])), reference)
    assert all(w.process is not None and w.process.poll() is None for w in workers)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_killed_worker_loses_and_doubles_nothing(
    kafka_cluster: Cluster, reference: Outcome, prefix: str,
    worker_factory: Callable[..., Worker], store: str,
) -> None:
    """On RocksDB the killed worker restarts on its own data directory, whose tables hold
    writes of a transaction that never committed (streams/worker.py rebuilds them)."""
    first, second = cluster_workers(worker_factory, prefix, kafka_cluster, 2,
                                    {"SMI_STORE": store})
    for number, chunk in enumerate(workload_chunks()):
        if number == 3:
            deliver(first, chunk, wait=False)
            second.stop(kill=True)  # kill -9 mid-stream, with work in flight
            second.restart()
            asyncio.run(consumed(first))
        else:
            deliver(first, chunk)
    same_as_reference(asyncio.run(outcome(first)), reference)


def test_lost_broker_loses_nothing(
    kafka_cluster: Cluster, reference: Outcome, prefix: str,
    worker_factory: Callable[..., Worker],
) -> None:
    """The broker lost is the group's coordinator, so the group and every transactional offset
    commit must find the new one (aiokafka stopped the sender on that once, aio-libs/aiokafka
    #1151)."""
    workers = cluster_workers(worker_factory, prefix, kafka_cluster, 2)
    victim = asyncio.run(group_coordinator(workers[0], kafka_cluster))
    try:
        for number, chunk in enumerate(workload_chunks()):
            if number == 2:
                deliver(workers[0], chunk, wait=False)
                assert broker.local.stop_node(victim)  # SIGTERM: a broker leaves mid-stream
                asyncio.run(consumed(workers[0]))
            else:
                deliver(workers[0], chunk)
        result = asyncio.run(outcome(workers[0]))
    finally:
        broker.local.start_node(BrokerSettings(), Settings(), victim, kafka_cluster)
    same_as_reference(result, reference)
    assert all(w.process is not None and w.process.poll() is None for w in workers)

"""Several workers on a three-node cluster: scale-out, a worker killed, a broker lost.

Every run is compared with one worker's run over the same input (same seed, its own topics):
the same corrections (by ``correction_id``, none twice) and the same final SMI. The input is
``Workload(stable=True)``: SR11.2 and SR11.3 and their responses, whose outcome does not depend
on how a worker interleaves the topics (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaProducer

from streams import broker
from streams import topics as t
from streams.broker import Cluster
from streams.client import Kafka, input_topics
from streams.settings import Settings
from streams.tables import changelog_topic
from streams.workload import Message, Workload
from tests.integration.harness import Worker

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DEVICES, EVENTS, CHUNKS = 1000, 24_000, 4
CLUSTER_ENV = {"SMI_REPLICATION_FACTOR": "3", "SMI_MIN_INSYNC_REPLICAS": "2",
               "SMI_PROCESSING_GUARANTEE": "exactly_once", "SMI_COMMIT_INTERVAL": "0.5"}
Outcome = tuple[list[str], dict[str, tuple[str, str]]]  # correction IDs, SMI state


def workload_chunks() -> list[list[Message]]:
    workload = Workload(DEVICES, seed=11, stable=True)
    events = list(workload.events(EVENTS))
    size = EVENTS // CHUNKS
    return [list(workload.setup()), *(events[i:i + size] for i in range(0, EVENTS, size))]


async def send(settings: Settings, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=10,
                                **settings.kafka_client_options())
    await producer.start()
    try:
        for m in messages:
            await producer.send(settings.topic(m.topic), m.value, key=m.key)
    finally:
        await producer.stop()


def load(worker: Worker, chunks: list[list[Message]]) -> None:
    """Send the CPL and inventory, and wait until they are decided: SRs and responses for a
    device must not race its inventory record or the CPL (other topics, no order between)."""
    settings = worker.settings()

    async def run() -> None:
        await send(settings, chunks[0])
        async with Kafka(settings) as kafka:
            await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=300)

    asyncio.run(run())


async def outcome(worker: Worker) -> Outcome:
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings), timeout=300)
        corrections = await kafka.read_all(settings.topic(t.CORRECTIONS))
        records = await kafka.latest_by_key(changelog_topic(settings))
    smi = {k: (v["status"], v["firmware_version"]) for k, v in records.items()}
    return [c["correction_id"] for _, c, _, _ in corrections], smi


@pytest.fixture(scope="module")
def reference(kafka_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Outcome]:
    """One worker, the whole input: what every other run must equal."""
    worker = Worker(kafka_cluster.bootstrap, "ref-cluster", "ref-cluster.", dict(CLUSTER_ENV))
    worker.start(tmp_path_factory.mktemp("reference"))
    try:
        chunks = workload_chunks()
        load(worker, chunks)
        for chunk in chunks[1:]:
            asyncio.run(send(worker.settings(), chunk))
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
    worker_factory: Callable[..., Worker], prefix: str, cluster: Cluster, count: int
) -> list[Worker]:
    workers = [worker_factory(prefix, env=CLUSTER_ENV, bootstrap=cluster.bootstrap,
                              wait=False)]
    workers += [worker_factory(prefix, env=CLUSTER_ENV, bootstrap=cluster.bootstrap,
                               app_id=workers[0].app_id, wait=False) for _ in range(count - 1)]
    for worker in workers:
        worker.wait_ready(120)
    return workers


def test_scale_out_equals_one_worker(
    kafka_cluster: Cluster, reference: Outcome, prefix: str,
    worker_factory: Callable[..., Worker],
) -> None:
    workers = cluster_workers(worker_factory, prefix, kafka_cluster, 2)
    chunks = workload_chunks()
    settings = workers[0].settings()
    load(workers[0], chunks)
    for number, chunk in enumerate(chunks):
        if number == 0:
            continue
        if number == 3:  # a third worker joins mid-stream
            workers.append(worker_factory(prefix, env=CLUSTER_ENV, app_id=workers[0].app_id,
                                          bootstrap=kafka_cluster.bootstrap))
        asyncio.run(send(settings, chunk))
    same_as_reference(asyncio.run(outcome(workers[0])), reference)
    assert all(w.process is not None and w.process.poll() is None for w in workers)


def test_killed_worker_loses_and_doubles_nothing(
    kafka_cluster: Cluster, reference: Outcome, prefix: str,
    worker_factory: Callable[..., Worker],
) -> None:
    first, second = cluster_workers(worker_factory, prefix, kafka_cluster, 2)
    settings = first.settings()
    chunks = workload_chunks()
    load(first, chunks)
    for chunk in chunks[1:3]:
        asyncio.run(send(settings, chunk))
    second.stop(kill=True)  # kill -9 mid-stream, with work in flight
    asyncio.run(send(settings, chunks[3]))
    second.restart()
    for chunk in chunks[4:]:
        asyncio.run(send(settings, chunk))
    same_as_reference(asyncio.run(outcome(first)), reference)


def test_lost_broker_loses_nothing(
    kafka_cluster: Cluster, reference: Outcome, prefix: str,
    worker_factory: Callable[..., Worker],
) -> None:
    workers = cluster_workers(worker_factory, prefix, kafka_cluster, 2)
    settings = workers[0].settings()
    chunks = workload_chunks()
    victim = kafka_cluster.nodes[2]
    load(workers[0], chunks)
    try:
        for number, chunk in enumerate(chunks):
            if number == 0:
                continue
            if number == 2:
                assert broker.local.stop_node(victim)  # SIGTERM: a broker leaves mid-stream
            asyncio.run(send(settings, chunk))
        result = asyncio.run(outcome(workers[0]))
    finally:
        broker.local.start_node(Settings(), victim, kafka_cluster)
    same_as_reference(result, reference)
    assert all(w.process is not None and w.process.poll() is None for w in workers)

"""No commit passes an output, a table record or a transaction that failed: also a commit
that was waiting, for the batch lock or for another commit, when the failure happened
(``streams/transport.py``). The broker's part is faked; ``tests/integration/test_faults.py``
refuses writes on a real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from faust.types import TP

from streams.emit import Emitter
from streams.errors import BatchFailed, DeliveryFailed
from streams.worker import _committed_to_the_end
from tests.unit.test_app import _committing, _fetch_consumer, _route

REQUESTS = TP("p.duis.service-requests", 0)


class _Recorder:
    """What reached the fake broker: records sent, offsets committed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.committed: list[dict[Any, int]] = []

    async def send_all(self, pending: Any) -> None:
        self.sent += [(t, v) for (t, _, _), records in pending.items() for _, v, _, _ in records]

    async def commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        self.committed.append(dict(offsets))
        return True


class _Producer:
    async def flush(self) -> None:
        return None

    class buffer:  # as faust's producer has it
        @staticmethod
        async def flush() -> None:
            return None


def _at_least_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: _Recorder
                   ) -> tuple[Any, Emitter, list[Any]]:
    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    emitter = Emitter(app=None, input_topic="in", exactly_once=False, changelog="cl")  # type: ignore[arg-type]
    consumer.add_outputs(emitter)
    emitter._send_all = broker.send_all  # type: ignore[method-assign]
    consumer._commit_offsets = broker.commit_offsets
    consumer._acked.setdefault(REQUESTS, [])

    async def hold() -> None:
        return None

    consumer.lease.hold = hold
    monkeypatch.setattr(type(consumer.app), "producer", _Producer(), raising=False)
    return consumer, emitter, fetch


async def _fetch_failing_while_a_commit_waits(consumer: Any, emitter: Emitter,
                                              fetch: list[Any]) -> Any:
    """A fetch writes a table record and an output, then its send fails (a topic the
    producer may not write) while a commit waits for the batch lock; the commit's outcome."""
    release, started = asyncio.Event(), asyncio.Event()

    async def handler(batches: Any) -> None:
        emitter.add_change(0, b"dev", b"new-record")
        emitter.add("out", 0, b"dev", b"correction")
        started.set()
        await release.wait()  # as send_batch waits for the topic's metadata
        emitter.pending.clear()  # Emitter.flush swapped them out before the send raised
        raise TopicAuthorizationFailedError("out")

    taking = asyncio.create_task(consumer._take_fetch(_route(handler, fetch), 0))
    await started.wait()
    commit = asyncio.create_task(consumer.commit())  # the timer's, a rebalance's, the stop's
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    with pytest.raises(TopicAuthorizationFailedError):
        await taking
    return await asyncio.gather(commit, return_exceptions=True)


async def test_a_commit_waiting_for_a_fetch_that_fails_commits_nothing_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _Recorder()
    consumer, emitter, fetch = _at_least_once(tmp_path, monkeypatch, broker)
    consumer._decided[REQUESTS] = 3
    [outcome] = await _fetch_failing_while_a_commit_waits(consumer, emitter, fetch)
    assert isinstance(outcome, BatchFailed)
    assert broker.sent == [] and broker.committed == []


async def test_under_exactly_once_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _Recorder()
    consumer, emitter, _ = _committing(tmp_path, broker.send_all, broker.commit_offsets,
                                       changelog="cl")
    _, fetch = _fetch_consumer(tmp_path / "fetch", monkeypatch)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp for tp, _ in fetch} | {REQUESTS})
    monkeypatch.setattr(consumer, "_caught_up", lambda topic, partition: True)
    [outcome] = await _fetch_failing_while_a_commit_waits(consumer, emitter, fetch)
    assert isinstance(outcome, BatchFailed)
    assert ("cl", b"new-record") not in broker.sent and broker.committed == []


async def test_a_commit_that_waited_for_one_that_failed_commits_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer's commit finds an output refused while a rebalance's commit waits for it."""
    broker = _Recorder()
    consumer, emitter, _ = _at_least_once(tmp_path, monkeypatch, broker)
    under_way = consumer.commit_future = asyncio.get_running_loop().create_future()
    second = asyncio.create_task(consumer.commit())
    for _ in range(5):
        await asyncio.sleep(0)
    consumer._decided[REQUESTS] = 20  # decided after the first commit took its offsets
    emitter.add_change(0, b"dev", b"record-whose-output-was-refused")
    consumer.failed = DeliveryFailed("1 records to smi.deadletter[0]: MessageSizeTooLarge")
    consumer.commit_future = None
    under_way.set_result(None)
    with pytest.raises(BatchFailed):
        await second
    assert broker.sent == [] and broker.committed == []


async def test_outputs_held_through_a_commit_that_cannot_be_sent_stop_every_commit(
        tmp_path: Path) -> None:
    """Under exactly_once, outputs decided during a commit are held for the next
    transaction; when sending them fails, the stop's commit must not commit their offsets."""
    broker = _Recorder()
    refuse = [True]

    async def send_all(pending: Any) -> None:
        if refuse and any(topic == "dlq" for topic, _, _ in pending):
            refuse.clear()
            raise TopicAuthorizationFailedError("dlq")
        await broker.send_all(pending)

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        broker.committed.append(dict(offsets))
        async with consumer.batch_lock:  # an agent decides while the commit runs
            emitter.add("dlq", 0, b"k", b"dead-letter")
            emitter.add("out", 0, b"k", b"correction")
            await emitter.flush()  # held
            consumer._decided[tp] = 20
        return True

    consumer, emitter, tp = _committing(tmp_path, send_all, commit_offsets)
    with pytest.raises(TopicAuthorizationFailedError):
        await consumer.commit()
    with pytest.raises(BatchFailed):
        await consumer.commit(start_new_transaction=False)  # the stop's
    assert {tp: 20} not in broker.committed


async def test_a_commit_waiting_for_transactions_that_fail_commits_nothing_held(
        tmp_path: Path) -> None:
    broker = _Recorder()
    second: asyncio.Task[bool] | None = None

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        nonlocal second
        if second is None:
            async with consumer.batch_lock:  # an agent decides while this commit runs
                emitter.add("out", 0, b"dev", b"correction")
                emitter.add_change(0, b"dev", b"record")
                await emitter.flush()  # held for the next transaction
                consumer._decided[tp] = 20
            second = asyncio.create_task(consumer.commit())  # a rebalance's, the stop's
            for _ in range(5):
                await asyncio.sleep(0)
            raise KafkaTimeoutError()  # one partition's EndTxn timed out
        return await broker.commit_offsets(offsets)

    consumer, emitter, tp = _committing(tmp_path, broker.send_all, commit_offsets,
                                        changelog="cl")
    with pytest.raises(KafkaTimeoutError):
        await consumer.commit()
    assert second is not None
    with pytest.raises(BatchFailed):
        await second
    assert broker.committed == [] and broker.sent == []


def test_a_stop_whose_last_commit_failed_keeps_no_table(tmp_path: Path) -> None:
    """faust logs a failure of the consumer's stop and exits 0: the tables must still be
    rebuilt from the changelog at the next start."""
    from tests.unit.test_app import build

    app = build(tmp_path)
    consumer: Any = app.consumer  # type: ignore[attr-defined]
    assert _committed_to_the_end(app)
    consumer.commit_error = KafkaTimeoutError()
    assert not _committed_to_the_end(app)
    consumer.commit_error, consumer.failed = None, DeliveryFailed("refused")
    assert not _committed_to_the_end(app)


async def test_a_cpl_batch_that_fails_halfway_stops_every_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """faust restarts the CPL agent after it raised, and would commit the CPL messages it
    acks next past the one whose dead letter was never sent."""
    from tests.unit.test_app import build

    app: Any = build(tmp_path)
    agent = next(a for name, a in app.agents.items() if name.endswith("track_cpl"))

    class Stream:
        def noack_take(self, size: int, seconds: float) -> Any:
            async def batches() -> Any:
                yield []
            return batches()

    async def refused(events: Any) -> None:
        raise TopicAuthorizationFailedError("smi.deadletter")

    monkeypatch.setattr(app.smi.processor, "on_cpl_events", refused)
    with pytest.raises(TopicAuthorizationFailedError):
        await agent.fun(Stream())
    with pytest.raises(BatchFailed):
        await app.consumer.commit()


async def test_a_commit_says_whether_it_went_through(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What the stop's clean mark reads (``streams/worker.py``): the last commit's error, and
    none once one has gone through after it."""
    broker = _Recorder()
    consumer, _, _ = _at_least_once(tmp_path, monkeypatch, broker)
    consumer._decided[REQUESTS] = 4
    refuse = [KafkaTimeoutError()]

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        if refuse:
            raise refuse.pop()
        return await broker.commit_offsets(offsets)

    consumer._commit_offsets = commit_offsets
    with pytest.raises(KafkaTimeoutError):
        await consumer.commit()
    assert isinstance(consumer.commit_error, KafkaTimeoutError)
    assert not _committed_to_the_end(consumer.app)
    assert await consumer.commit()
    assert consumer.commit_error is None and _committed_to_the_end(consumer.app)

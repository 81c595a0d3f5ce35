"""The faust app as built from the settings: topics, tables, agents (no broker needed)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import aiokafka
import orjson
import pytest
from aiokafka.client import CoordinationType
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
)
from faust.types import TP

from streams import backends, engine, repartition, topics, transport
from streams.app import SmiApp, create_app
from streams.backends import ScanGuard, backend_of
from streams.core.records import Device, Pending
from streams.emit import Emitter
from streams.errors import BatchFailed, ConfigError, DeliveryFailed, Rebalanced
from streams.order import CplTimeline, Ordering
from streams.repartition import IDLE, home_of
from streams.settings import Settings
from streams.tables import table_size, table_statuses
from streams.tools.workload import Workload
from streams.transport import MAX_AHEAD, BatchRoute, retrying_lookup
from streams.worker import check_web_port, lock_state
from tests.unit.incoming import Message, drive


def build(tmp_path: Path, **overrides: object) -> SmiApp:
    return create_app(Settings(data_dir=tmp_path, app_id="unit", topic_prefix="p.", **overrides))


def test_agents_decide_one_event_at_a_time(tmp_path: Path) -> None:
    # concurrency above 1 lets faust commit past an event still in flight (faust #606)
    app = build(tmp_path)
    agents = {name.rsplit(".", 1)[-1]: agent for name, agent in app.agents.items()}  # type: ignore[attr-defined]
    assert set(agents) == {"reconcile_firmware", "track_cpl"}
    assert all(agent.concurrency == 1 for agent in agents.values())


def test_topics_tables_and_policy_come_from_the_settings(tmp_path: Path) -> None:
    app = build(tmp_path, partitions=4, sr11_2_when_suspended=False)
    parts = app.smi
    assert parts.topics.device_topic.topics == (  # in their rank order (streams/order.py)
        "p.smi.inventory", "p.duis.service-requests", "p.duis.device-responses",
        "p.unit-repartition")  # then what the groups forward to each other
    assert parts.topics.outputs["smi.status-corrections"].get_topic_name() == (
        "p.smi.status-corrections")
    changelog = parts.tables.device_to_record.changelog_topic
    assert changelog.get_topic_name() == "p.unit-device_to_record-changelog"
    assert (changelog.key_serializer, changelog.value_serializer) == ("text", "smi")
    assert parts.tables.device_to_record.partitions == 4
    assert parts.processor.policy.sr11_2_when_suspended is False


@pytest.mark.parametrize(("value", "seconds"), [("P7D", 604800.0), ("3600", 3600.0),
                                                ("PT90M", 5400.0)])
def test_the_age_limit_of_awaited_requests_reads_iso_8601_or_seconds(
        monkeypatch: pytest.MonkeyPatch, value: str, seconds: float) -> None:
    monkeypatch.setenv("SMI_PENDING_MAX_AGE", value)
    assert Settings().policy.pending_max_age == seconds


def test_secrets_are_not_shown(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sasl_password="hunter2", api_token="t0ken")  # type: ignore[arg-type]
    assert "hunter2" not in repr(settings) and "t0ken" not in str(settings.model_dump())


def test_tls_and_sasl_reach_the_faust_app(tmp_path: Path) -> None:
    tls = build(tmp_path, security_protocol="SSL")
    assert tls.conf.broker_credentials.protocol.name == "SSL"  # type: ignore[attr-defined]
    assert tls.conf.broker_credentials.context is not None  # type: ignore[attr-defined]
    sasl = build(tmp_path, security_protocol="SASL_SSL", sasl_username="smi",
                 sasl_password="s3cret")
    credentials = sasl.conf.broker_credentials  # type: ignore[attr-defined]
    assert (credentials.protocol.name, credentials.mechanism.value) == (
        "SASL_SSL", "SCRAM-SHA-512")
    assert credentials.ssl_context is not None and "s3cret" not in repr(credentials)
    assert build(tmp_path).conf.broker_credentials is None  # type: ignore[attr-defined]


async def test_an_undelivered_output_stops_the_commit() -> None:
    emitter = Emitter(app=None, input_topic="in", exactly_once=False)  # type: ignore[arg-type]
    written: list[tuple[str, int, int]] = []
    emitter.on_sent["smi.status-corrections"] = lambda *where: written.append(where)
    loop = asyncio.get_running_loop()
    delivered, lost = loop.create_future(), loop.create_future()
    delivered.set_result(type("Meta", (), {"offset": 41})())
    lost.set_exception(KafkaTimeoutError())
    emitter._delivered(delivered, "smi.status-corrections", 3, 2)
    await emitter.check_delivered()  # all delivered: the commit goes on
    emitter._delivered(lost, "smi.status-corrections", 5, 7)
    with pytest.raises(DeliveryFailed, match=r"7 records to smi.status-corrections\[5\]"):
        await emitter.check_delivered()
    assert written == [("smi.status-corrections", 3, 42)]
    await emitter.check_delivered()  # told once: a restarted worker decides those inputs again
    cancelled = loop.create_future()
    cancelled.cancel()
    emitter._delivered(cancelled, "dcc.alerts", 0, 1)
    with pytest.raises(DeliveryFailed, match=r"dcc.alerts\[0\]"):
        await emitter.check_delivered()


async def test_the_commit_waits_for_the_brokers_answer_to_every_batch_sent() -> None:
    """A producer's flush can return before the broker has answered for a batch: the check
    waits for every answer, so a refusal that comes late still stops the commit."""
    emitter = Emitter(app=None, input_topic="in", exactly_once=False)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    late = loop.create_future()
    emitter.unsettled.add(late)
    late.add_done_callback(lambda f: emitter._delivered(f, "p.x-changelog", 4, 3))
    loop.call_later(0.05, late.set_exception, KafkaTimeoutError())
    with pytest.raises(DeliveryFailed, match=r"3 records to p.x-changelog\[4\]"):
        await emitter.check_delivered()
    assert not emitter.unsettled


async def test_the_commit_does_not_wait_for_batches_sent_after_it_began() -> None:
    """Under at_least_once the agents go on deciding while a commit waits for the broker: the
    commit waits for the batches its offsets cover, not for those sent after, which kept it
    waiting as long as deciding went on."""
    emitter = Emitter(app=None, input_topic="in", exactly_once=False)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    covered, later = loop.create_future(), loop.create_future()
    emitter.unsettled.add(covered)
    covered.add_done_callback(lambda f: emitter._delivered(f, "p.x-changelog", 1, 2))
    check = asyncio.ensure_future(emitter.check_delivered())
    await asyncio.sleep(0)
    emitter.unsettled.add(later)  # sent by a batch decided during the commit
    loop.call_later(0.01, covered.set_exception, KafkaTimeoutError())
    with pytest.raises(DeliveryFailed, match=r"2 records to p.x-changelog\[1\]"):
        await asyncio.wait_for(check, 5)
    assert emitter.unsettled == {later}
    later.cancel()


async def _held_batch(producer: aiokafka.AIOKafkaProducer, tp: aiokafka.TopicPartition,
                      value: bytes) -> Any:
    """A batch of ``tp`` that ``producer`` holds, as it does while a request to the broker is
    in flight, with one record of ``value``."""
    builder = producer.create_batch()
    builder.append(key=b"k", value=value, timestamp=None)
    await producer._message_accumulator.add_batch(builder, tp, 1)
    return producer._message_accumulator._batches[tp][-1]


async def test_outputs_join_the_batch_the_producer_holds_for_their_partition() -> None:
    """aiokafka sends a partition's next batch only once the request before has left. Outputs
    sent meanwhile join the batch it holds, and are told the offsets they were written at,
    rather than wait (deciding stopped behind a slow broker). A batch that is refused refuses
    them too, and the commit stops."""
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started
    emitter = Emitter(SimpleNamespace(producer=SimpleNamespace(  # type: ignore[arg-type]
        _ensure_producer=lambda: producer)), input_topic="in", exactly_once=False)
    written: list[tuple[str, int, int]] = []
    emitter.on_sent["out"] = lambda *where: written.append(where)
    held = await _held_batch(producer, aiokafka.TopicPartition("out", 3), b"first")
    emitter.add("out", 3, b"k", b"second")
    emitter.add("out", 3, b"k", b"third")
    await asyncio.wait_for(emitter.flush(), 1)  # joined: nothing to wait for
    assert held.record_count == 3 and len(emitter.unsettled) == 1
    held.done(base_offset=40)
    await emitter.check_delivered()
    assert written == [("out", 3, 42)]  # the last of the two, after the held one at 40
    refused = await _held_batch(producer, aiokafka.TopicPartition("out", 4), b"fourth")
    emitter.add("out", 4, b"k", b"fifth")
    await asyncio.wait_for(emitter.flush(), 1)
    refused.failure(KafkaTimeoutError())
    with pytest.raises(DeliveryFailed, match=r"1 records to out\[4\]"):
        await emitter.check_delivered()


async def test_a_batch_already_sent_once_takes_no_more_outputs() -> None:
    """A batch put back for a retry is built already: outputs wait for it to leave."""
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    tp = aiokafka.TopicPartition("out", 0)
    held = await _held_batch(producer, tp, b"first")
    assert engine.queued_batch(producer, tp) is not None
    held.drain_ready()  # what the sender does as it takes a batch
    assert engine.queued_batch(producer, tp) is None


class _Batch:
    def __init__(self, room: int) -> None:
        self.room, self.values = room, []  # how many bytes of values fit

    def append(self, key: Any, value: bytes, timestamp: Any, headers: Any) -> object | None:
        if len(value) > self.room:
            return None
        self.room -= len(value)
        self.values.append(value)
        return object()


class _Transactions:
    """The producers of an exactly_once worker's transactions, each recording what it sends
    in batches of ``room`` bytes of values."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.room = room
        self.sent: list[tuple[str, str, int, list[bytes]]] = []  # transaction, topic, partition

    def __getitem__(self, tid: str) -> Any:
        async def send(batch: _Batch | None, topic: str, partition: int,
                       values: list[bytes]) -> asyncio.Future[Any]:
            self.sent.append((tid, topic, partition, values))
            future = asyncio.get_running_loop().create_future()
            future.set_result(SimpleNamespace(offset=0))
            return future

        return SimpleNamespace(
            _message_accumulator=SimpleNamespace(_exception=None, _closed=False, _batches={}),
            _txn_manager=None,
            create_batch=lambda: _Batch(self.room),
            send_batch=lambda batch, topic, partition: send(batch, topic, partition,
                                                            batch.values),
            send=lambda topic, value, **kw: send(None, topic, kw["partition"], [value]))


def _transactional(transactions: _Transactions) -> Emitter:
    app = SimpleNamespace(conf=SimpleNamespace(id="unit"),
                          assignor=SimpleNamespace(group_for_topic=lambda topic: 0),
                          producer=SimpleNamespace(_transaction_producers=transactions))
    return Emitter(app, "in", exactly_once=True, changelog="cl")  # type: ignore[arg-type]


async def test_under_exactly_once_everything_goes_in_the_transaction_of_its_input() -> None:
    """Outputs, forwards and changelog records commit with the offsets of the input
    partition they came from, whatever partition they are written to."""
    transactions = _Transactions()
    emitter = _transactional(transactions)
    emitter.add("out", 1, b"k", b"output")
    emitter.forward("rep", 2, 1, b"k", b"forward", 15, [("h", b"v")])
    emitter.add_change(3, b"device", b"old")
    emitter.add_change(3, b"device", b"record")  # the latest only
    await emitter.flush()
    send = emitter.take_changes()
    assert send is not None and emitter.take_changes() is None  # taken once
    await send()
    assert transactions.sent == [("unit-0-1", "out", 1, [b"output"]),
                                 ("unit-0-1", "rep", 2, [b"forward"]),
                                 ("unit-0-3", "cl", 3, [b"record"])]
    # each one ends at the commit, offsets or not
    assert emitter.take_used() == {"unit-0-1", "unit-0-3"} and emitter.take_used() == set()


async def test_outputs_too_many_for_one_batch_all_leave_in_order() -> None:
    transactions = _Transactions(room=10)
    emitter = _transactional(transactions)
    values = [b"%05d" % n for n in range(5)] + [b"x" * 11, b"last"]  # one alone: too large
    for value in values:
        emitter.add("out", 0, b"k", value)
    await emitter.flush()
    assert [batch for *_, batch in transactions.sent] == [
        values[0:2], values[2:4], values[4:5], values[5:6], values[6:7]]


def _recording_commits() -> tuple[list[Any], Any, Any]:
    """An emitter's sends that do nothing, and offset commits that are recorded."""
    committed: list[Any] = []

    async def send_all(pending: Any) -> None:
        return None

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        committed.append(dict(offsets))
        return True

    return committed, send_all, commit_offsets


def _committing(tmp_path: Path, send_all: Any, commit_offsets: Any,
                changelog: str | None = None) -> tuple[Any, Emitter, TP]:
    """An exactly_once worker's consumer (not started) with one emitter wired as the agents
    wire theirs, a partition decided up to offset 10, and the broker's part faked: what the
    emitter sends (``send_all``) and the transactions' commit (``commit_offsets``)."""
    app = build(tmp_path, processing_guarantee="exactly_once")
    app.in_worker = True  # type: ignore[attr-defined]  # transactions are a worker's
    consumer = app.consumer  # type: ignore[attr-defined]
    emitter = Emitter(app=None, input_topic="in", exactly_once=True,  # type: ignore[arg-type]
                      changelog=changelog)
    consumer.add_outputs(emitter)
    emitter._send_all = send_all  # type: ignore[method-assign]
    consumer._commit_offsets = commit_offsets
    tp = TP("p.duis.service-requests", 0)
    consumer._decided[tp] = 10
    consumer._acked.setdefault(tp, [])
    return consumer, emitter, tp


async def test_under_exactly_once_batches_decided_during_a_commit_wait_for_the_next_transaction(
    tmp_path: Path
) -> None:
    happened: list[tuple[str, object]] = []

    async def send_all(pending: Any) -> None:
        if sent := [v for records in pending.values() for _, v, _, _ in records]:
            happened.append(("sent", sent))

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        happened.append(("committing", dict(offsets)))
        # the lock is free while the transactions commit: an agent decides a batch
        await asyncio.wait_for(consumer.batch_lock.acquire(), 1)
        emitter.add("out", 0, b"k", b"during")
        await emitter.flush()
        consumer._decided[tp] = 20
        consumer.batch_lock.release()
        assert happened == [("sent", [b"before"]), ("committing", {tp: 10})]  # held back
        happened.append(("committed", dict(offsets)))
        return True

    consumer, emitter, tp = _committing(tmp_path, send_all, commit_offsets)
    emitter.add("out", 0, b"k", b"before")
    assert await consumer.commit()
    # the commit's outputs go first, into its transaction; those decided while it commits
    # only once it is done (into the next), and their offsets are not in it
    assert happened == [("sent", [b"before"]), ("committing", {tp: 10}),
                        ("committed", {tp: 10}), ("sent", [b"during"])]
    assert not consumer.holding


async def test_under_exactly_once_the_changelog_joins_the_transaction_before_its_offsets(
    tmp_path: Path
) -> None:
    """Sent after the offsets, a table's records would land in the next transaction: a crash
    between the two would restore the table from before inputs counted as decided."""
    happened: list[tuple[str, object]] = []

    async def send_all(pending: Any) -> None:
        if pending:
            happened.append(("sent", sorted(topic for topic, _, _ in pending)))

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        happened.append(("committing", dict(offsets)))
        return True

    consumer, emitter, tp = _committing(tmp_path, send_all, commit_offsets, changelog="cl")
    emitter.add("out", 0, b"k", b"v")
    emitter.add_change(0, b"device", b"record")
    assert await consumer.commit()
    assert happened == [("sent", ["out"]), ("sent", ["cl"]), ("committing", {tp: 10})]


async def test_a_commit_called_while_another_is_under_way_waits_then_commits_what_it_must(
    tmp_path: Path
) -> None:
    """The one under way took its offsets before: a rebalance's commit must also cover what
    was decided since."""
    committed, send_all, commit_offsets = _recording_commits()
    consumer, _, tp = _committing(tmp_path, send_all, commit_offsets)
    under_way = consumer.commit_future = asyncio.get_running_loop().create_future()
    committing = asyncio.create_task(consumer.commit())
    for _ in range(5):
        await asyncio.sleep(0)
    assert committed == []
    consumer._decided[tp] = 20
    consumer.commit_future = None  # as the commit under way ends
    under_way.set_result(None)
    assert await committing
    assert committed == [{tp: 20}]


async def test_under_exactly_once_a_failed_commit_keeps_what_was_held_and_stops_every_commit(
    tmp_path: Path
) -> None:
    sent: list[bytes] = []

    async def send_all(pending: Any) -> None:
        sent.extend(v for records in pending.values() for _, v in records)

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        emitter.add("out", 0, b"k", b"during")  # decided while the transactions commit
        raise KafkaTimeoutError()

    consumer, emitter, _ = _committing(tmp_path, send_all, commit_offsets)
    with pytest.raises(KafkaTimeoutError):
        await consumer.commit()
    await emitter.flush()  # no transaction is known to take it: it stays held
    assert sent == [] and emitter.pending
    with pytest.raises(BatchFailed, match="KafkaTimeoutError"):
        await consumer.commit()


async def test_an_output_not_delivered_stops_every_later_commit(tmp_path: Path) -> None:
    """The emitter reports a lost output once (a restarted worker decides its input again):
    the consumer's latch is what keeps every later commit, the stop's included, from passing
    that input's offset."""
    committed, send_all, commit_offsets = _recording_commits()
    told: list[str] = []

    async def check() -> None:
        if not told:
            told.append("lost")
            raise DeliveryFailed("1 records to smi.status-corrections[0] were not delivered")

    consumer, _, _ = _committing(tmp_path, send_all, commit_offsets)
    consumer.commit_checks = [check]
    with pytest.raises(DeliveryFailed):
        await consumer.commit()
    with pytest.raises(BatchFailed, match="not delivered"):
        await consumer.commit()  # the check passes now: the latch refuses all the same
    assert committed == []


async def test_every_partitions_transaction_commits_before_one_that_failed_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Side by side, and each one ended before an error is raised: outputs held while they
    commit must not meet a transaction still committing. Each begins its next one."""
    done: list[tuple[str, str]] = []

    class Transaction:
        def __init__(self, tid: str) -> None:
            self.tid = tid

        async def send_offsets_to_transaction(self, offsets: Any, group: str) -> None:
            done.append((self.tid, f"offsets {dict(offsets)} for {group}"))

        async def commit_transaction(self) -> None:
            await asyncio.sleep(0.01 if self.tid == "g-0" else 0.05)
            if self.tid == "g-0":
                raise ProducerFenced()
            done.append((self.tid, "committed"))

        async def begin_transaction(self) -> None:
            done.append((self.tid, "begun"))

    producer = build(tmp_path, processing_guarantee="exactly_once").producer
    open_ = {tid: Transaction(tid) for tid in ("g-0", "g-1", "g-2")}
    monkeypatch.setattr(producer, "transaction", open_.get)
    monkeypatch.setattr(producer, "transaction_lock", lambda tid: asyncio.Lock())
    tp = TP("p.duis.service-requests", 1)
    with pytest.raises(ProducerFenced):
        await producer.commit_transactions({"g-0": {}, "g-1": {tp: 5}, "g-2": {}}, "g")
    assert sorted(done) == [("g-1", "begun"), ("g-1", "committed"),
                            ("g-1", f"offsets {{{tp!r}: 5}} for g"),
                            ("g-2", "begun"), ("g-2", "committed")]


async def test_under_exactly_once_a_transaction_without_offsets_commits_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition group that only applied a CPL removal sent corrections and changelog
    records in its transaction without deciding a record of its own: left open, that
    transaction would hold back every read_committed reader of those partitions."""
    committed: list[tuple[str, Any]] = []

    async def send_all(pending: Any) -> None:
        return None

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        committed.append(("offsets", dict(offsets)))
        return True

    async def commit_transactions(by_id: Any, group: str, start_new_transaction: bool) -> None:
        committed.append(("without offsets", by_id))

    consumer, emitter, tp = _committing(tmp_path, send_all, commit_offsets)
    monkeypatch.setattr(transport, "transaction_of", lambda app, topic, p: f"unit-g-{p}")
    monkeypatch.setattr(consumer.app.producer, "commit_transactions", commit_transactions)
    emitter.used |= {"unit-g-0", "unit-g-3"}  # partition 3: the removal's outputs only
    await consumer.commit()
    assert committed == [("offsets", {tp: 10}), ("without offsets", {"unit-g-3": {}})]
    await consumer.commit()  # nothing sent since: nothing more to end without offsets
    assert [c for c in committed if c[0] == "without offsets"] == [
        ("without offsets", {"unit-g-3": {}})]


async def test_table_scans_count_every_owned_record_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/stats and /metrics read RocksDB in chunks under the batch lock, resuming after the last
    key of each; the store's own offset key is not a device."""
    monkeypatch.setattr(backends, "SCAN_CHUNK", 3)
    app = build(tmp_path, store="rocksdb://", partitions=2)
    table = app.smi.tables.device_to_record
    for n in range(7):
        status = "Suspended" if n % 3 == 0 else "Commissioned"
        value = {"status": status, "partition": 0}
        backend_of(table).put(0, f"D{n}", value, orjson.dumps(value))
    backend_of(table).put(1, "E1", {"status": "Pending"}, b'{"status": "Pending"}')
    table.data.set_persisted_offset(TP(table.changelog_topic.get_topic_name(), 0), 41)
    guard = ScanGuard(asyncio.Lock(), lambda: True)
    assert await table_statuses(table, {0}, guard) == {"Suspended": 3, "Commissioned": 4}
    assert await table_size(table, {0, 1}, guard) == 8
    moved = ScanGuard(asyncio.Lock(), lambda: False)
    with pytest.raises(Rebalanced):
        await table_size(table, {0}, moved)


async def test_a_producer_asks_again_for_a_coordinator_when_the_broker_asked_goes_away(
        tmp_path: Path) -> None:
    # aiokafka 0.14 stopped the sender (and so the worker) when the random broker it asked where
    # the coordinator is closed the connection: the lookup goes through aiokafka's own code here
    app = build(tmp_path, processing_guarantee="exactly_once")
    producer = app.producer._new_producer(transactional_id="unit-0")  # type: ignore[attr-defined]
    answers: list[object] = [KafkaConnectionError("Connection at 127.0.0.1:29196 closed"), 2]
    asked: list[str] = []

    async def lookup(kind: object, key: str) -> int:
        asked.append(key)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return int(answer)  # type: ignore[call-overload]

    async def ready(node_id: int, group: object = None) -> bool:
        return True

    producer.client.coordinator_lookup = lookup
    producer.client.ready = ready
    producer.client.force_metadata_update = lambda: asyncio.sleep(0)
    assert await producer._sender._find_coordinator(CoordinationType.GROUP, "unit") == 2
    assert asked == ["unit", "unit"]


async def test_a_coordinator_lookup_that_cannot_succeed_still_fails() -> None:
    async def refused(kind: object, key: str) -> int:
        raise KafkaError("lookup failed") from GroupAuthorizationFailedError()

    lookup = retrying_lookup(refused, None, 0)
    with pytest.raises(KafkaError):
        await lookup(CoordinationType.GROUP, "unit")


@pytest.mark.parametrize(("setting", "expected_ms"), [({}, 50), ({"fetch_max_wait": 0.25}, 250)])
async def test_the_worker_fetch_waits_at_the_broker_as_long_as_the_settings_say(
    tmp_path: Path, setting: dict[str, float], expected_ms: int
) -> None:
    # faust asks for 1.5 s, and aiokafka sends a broker one fetch at a time: a fetch for the
    # partitions without data held every other partition's records back that long
    app = build(tmp_path, **setting)
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    try:
        assert consumer._fetch_max_wait_ms == expected_ms
    finally:
        await consumer.stop()


async def test_a_commits_changelog_records_leave_in_one_batch_per_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiokafka sends one batch per partition in each request: at faust's 16 KiB a commit at
    # 5,000 events/s sent its changelog in a dozen round trips a partition: up to a second
    app = build(tmp_path)
    # the producer faust would start, with its settings; its sends recorded, not made
    producer = app.producer._producer = app.producer._new_producer()  # type: ignore[attr-defined]
    batches: list[tuple[int, int]] = []  # partition, records

    async def send_batch(batch: Any, topic: str, partition: int) -> asyncio.Future[None]:
        batches.append((partition, batch.record_count()))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    monkeypatch.setattr(producer, "send_batch", send_batch)
    emitter = Emitter(app, "in", exactly_once=False, changelog="changelog")
    value = orjson.dumps(Device("00-00-00-00-00-00-00-01", "ESME", 2, "ACME", "M1", "H1",
                                "0001A000", "Commissioned", "SUPPLIER-01",
                                pending=(Pending("REQ-" + "0" * 32, "11.2"),)).to_dict(0))
    partitions = app.conf.topic_partitions
    for n in range(MAX_AHEAD):  # the most a commit holds, spread over the partitions
        emitter.add_change(n % partitions, b"%016d" % n, value)
    try:
        send = emitter.take_changes()
        assert send is not None
        await send()
    finally:
        await producer.stop()
    assert sorted(batches) == [(p, MAX_AHEAD // partitions) for p in range(partitions)]


async def test_a_fetch_is_decided_whole_and_sent_before_it_counts_as_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every partition's outputs are on their way when the handler returns (the consumer then
    marks the fetch's offsets as done), and they go in one flush: under at_least_once, one
    request per broker."""
    app = build(tmp_path, partitions=2)
    processor = app.smi.processor
    flushed: list[set[tuple[str, int]]] = []

    async def flush() -> None:
        flushed.append(set(processor.emitter.pending))
        processor.emitter.pending.clear()

    monkeypatch.setattr(processor.emitter, "flush", flush)
    requests = [m for m in Workload(40, seed=3).events(400, cpl_changes=False)
                if m.topic == topics.REQUESTS]
    await drive(processor, [  # unknown devices: each request is rejected
        Message(app.smi.settings.topic(m.topic), home_of(m.key.decode(), 2), offset, m.key,
                m.value)
        for offset, m in enumerate(requests)])
    rejections = app.smi.settings.topic(topics.REJECTIONS)
    # with each group's watermark for the other (nothing left to forward)
    repartition = processor.repartition_name
    assert flushed == [{(rejections, 0, 0), (rejections, 1, 1), (repartition, 1, 0),
                        (repartition, 0, 1)}]
    assert processor.metrics.messages_out[topics.REJECTIONS] == len(requests) > 10


async def test_a_partition_is_caught_up_once_handed_over_to_the_end_the_last_fetch_gave(
) -> None:
    """Its group does not wait for it then (``streams/order.py``), and waits while it is not.
    The end is the last stable offset: the worker reads committed records only, and what lies
    past it may yet be aborted or committed with an older timestamp."""
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
    tp = aiokafka.TopicPartition("t", 0)
    assert not transport.fetched_to_end(consumer, tp)  # not assigned
    consumer.assign([tp])
    state = engine.partition_state(consumer, tp)
    state.seek(5)
    assert not transport.fetched_to_end(consumer, tp)  # no fetch yet
    state.highwater, state.lso = 6, 5
    assert transport.fetched_to_end(consumer, tp)
    state.lso = 6
    assert not transport.fetched_to_end(consumer, tp)
    await consumer.stop()


def test_a_partition_read_to_its_end_has_lag_until_a_commit_passes_what_was_decided(
    tmp_path: Path
) -> None:
    consumer = build(tmp_path).consumer  # type: ignore[attr-defined]
    tp = TP("p.duis.service-requests", 0)
    consumer.committed_offsets[tp] = 3
    assert consumer._lag_of(tp, end=7, position=5) == 4
    consumer._decided[tp] = 7  # fetched to the end and decided, not committed yet
    assert consumer._lag_of(tp, end=7, position=7) == 4
    consumer.committed_offsets[tp] = 7
    assert consumer._lag_of(tp, end=7, position=7) == 0
    # under exactly_once the end is past the commit marker: committed to its last record
    assert consumer._lag_of(tp, end=8, position=8) == 0


class _Record(NamedTuple):
    offset: int
    timestamp: int = 0


def _fetch_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    """The worker's consumer (not started), owning two partitions that are caught up, and a
    fetch of them."""
    consumer = build(tmp_path).consumer  # type: ignore[attr-defined]
    fetch = [(TP("p.duis.service-requests", 0), [_Record(5), _Record(6)]),
             (TP("p.duis.device-responses", 1), [_Record(9)])]
    monkeypatch.setattr(consumer, "assignment", lambda: {tp for tp, _ in fetch})
    monkeypatch.setattr(consumer, "_caught_up", lambda topic, partition: True)
    return consumer, fetch


def _route(handler: Any, fetch: list[Any], repartition: str | None = None) -> BatchRoute:
    """A route whose partition groups hold ``fetch``."""
    timeline = CplTimeline(2)
    for partition in range(2):
        timeline.set_caught_up(partition, True)
    ordering = Ordering(("p.smi.inventory", "p.duis.service-requests",
                         "p.duis.device-responses"), "p.cpl.entries", timeline, 0.0,
                        lambda partition: None, 100, repartition)
    for tp, records in fetch:
        ordering.add(tp.topic, tp.partition, records)
    route = BatchRoute(handler, asyncio.Event(), ordering)
    route.ready.set()
    return route


def _marked(consumer: Any) -> dict[Any, int]:
    return dict(consumer._decided)


def _decided(batches: Any) -> list[tuple[int, list[Any]]]:
    return [(group.partition, [step.item.record for step in steps])
            for group, steps in batches if steps]


async def test_a_fetch_counts_as_done_only_once_every_partition_is_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)

    async def handler(batches: Any) -> None:
        seen.append((_decided(batches), _marked(consumer)))  # nothing marked while it decides

    route = _route(handler, fetch)
    await consumer._take_fetch(route, consumer.app.consumer_generation_id)
    assert seen == [([(0, fetch[0][1]), (1, fetch[1][1])], {})]
    assert _marked(consumer) == {fetch[0][0]: 7, fetch[1][0]: 10}
    assert set(consumer._acked) == {fetch[0][0], fetch[1][0]} and consumer._ahead == 3
    stale = consumer.app.consumer_generation_id - 1  # read before a rebalance: left alone
    consumer._decided.clear()
    route = _route(handler, fetch)
    await consumer._take_fetch(route, stale)
    assert len(seen) == 1 and _marked(consumer) == {}


class _Repartitioned(NamedTuple):
    offset: int
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: int = 0
    key: bytes | None = None


async def test_the_repartition_partition_counts_as_done_up_to_what_its_group_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What other groups forwarded and said (watermarks) is read from the repartition topic:
    a restart reads it again from the offset committed with the group's own records."""
    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    rep = TP("p.unit-repartition", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {fetch[0][0], rep})

    async def handler(batches: Any) -> None:
        return None

    route = _route(handler, fetch[:1], repartition=rep.topic)
    value, headers = repartition.watermark_message(1, [IDLE, IDLE, IDLE], 0)
    route.ordering.add(rep.topic, 0, [_Repartitioned(4, value, headers)])
    await consumer._take_fetch(route, consumer.app.consumer_generation_id)
    assert _marked(consumer) == {fetch[0][0]: 7, rep: 5}


async def test_the_repartition_partition_counts_as_done_only_up_to_a_forward_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward still waiting for its turn is read again after a crash: it is in no table."""
    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    rep = TP("p.unit-repartition", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {fetch[0][0], rep})
    route = _route(_ignore_batches, fetch[:1], repartition=rep.topic)
    route.ordering.idle = 5.0
    value, headers = repartition.watermark_message(1, [(12, 1, 1, 0), IDLE, IDLE], 0)
    route.ordering.add(rep.topic, 0, [
        _Repartitioned(4, b"{}", repartition.origin_headers(2, 1, 7, 15), 15, b"k"),
        _Repartitioned(5, value, headers)])  # group 1 may still forward inventory from 12
    await consumer._take_fetch(route, consumer.app.consumer_generation_id)
    assert _marked(consumer) == {fetch[0][0]: 7, rep: 4}


def test_a_cpl_event_read_before_a_rebalance_is_neither_decided_nor_acked(
    tmp_path: Path
) -> None:
    """It is read again from the committed offset (faust's stream, ``cpl.entries``)."""
    consumer = build(tmp_path).consumer  # type: ignore[attr-defined]
    generation = consumer.app.consumer_generation_id

    def event(generation: int | None) -> Any:
        return SimpleNamespace(message=SimpleNamespace(generation_id=generation))

    assert consumer.is_current(event(generation))
    assert not consumer.is_current(event(generation - 1))
    assert not consumer.is_current(event(None))
    consumer.revoking = True  # a rebalance is under way
    assert not consumer.is_current(event(generation))


async def test_a_fetch_that_spans_a_rebalance_is_dropped_and_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its records may come from before or after the seek that ends the rebalance: they are
    not buffered, and the consumer seeks to the committed offsets again to read them anew."""
    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    seeks: list[bool] = []

    async def perform_seek() -> None:
        seeks.append(True)

    monkeypatch.setattr(consumer, "perform_seek", perform_seek)
    decided: list[Any] = []

    async def handler(batches: Any) -> None:
        decided.extend(_decided(batches))

    route = _route(handler, [])
    consumer.batch_routes = dict.fromkeys(("p.duis.service-requests",
                                           "p.duis.device-responses"), route)
    records = dict(fetch)
    consumer._rebalances = 1  # one happened while the fetch was on its way
    assert await consumer._take_batches(records, rebalances=0) == {}
    assert seeks == [True] and decided == [] and _marked(consumer) == {}
    await consumer._take_batches(records, rebalances=1)  # read anew, after the seek
    assert seeks == [True] and decided == [(0, fetch[0][1]), (1, fetch[1][1])]


async def test_a_device_partition_with_nothing_committed_is_read_again_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka's seek to the committed offsets leaves a partition with no commit, or one at
    offset 0, where its fetcher has got to: the records a dropped fetch took from it were
    lost (a group formed on a backlog decided responses whose requests it never read)."""
    consumer, _ = _fetch_consumer(tmp_path, monkeypatch)
    route = _route(_ignore_batches, [])
    consumer.batch_routes = dict.fromkeys(("p.duis.service-requests", "p.duis.device-responses",
                                           "p.smi.inventory"), route)
    committed = {aiokafka.TopicPartition("p.duis.service-requests", 0): None,
                 aiokafka.TopicPartition("p.duis.device-responses", 1): 0,
                 aiokafka.TopicPartition("p.smi.inventory", 2): 7,  # aiokafka seeks this one
                 aiokafka.TopicPartition("p.app-device_to_record-changelog", 0): None}
    sought: list[Any] = []

    async def seek_to_committed() -> dict[Any, Any]:
        return committed

    async def call_thread(method: Any, *partitions: Any) -> None:
        sought.append((method.__name__, sorted(partitions)))

    monkeypatch.setattr(consumer._thread, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer._thread, "call_thread", call_thread)
    monkeypatch.setattr(consumer._thread, "_ensure_consumer", aiokafka.AIOKafkaConsumer)
    assert await consumer.seek_to_committed() == committed
    # the changelog's position is recovery's, not the group's
    assert sought == [("seek_to_beginning", [
        aiokafka.TopicPartition("p.duis.device-responses", 1),
        aiokafka.TopicPartition("p.duis.service-requests", 0)])]


async def _ignore_batches(batches: Any) -> None:
    return None


async def test_a_fetch_asks_for_what_a_group_waits_for_alone_when_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind (the last fetch was a full batch, so aiokafka may hold more), a fetch asks for
    what a group waits for alone, or it could sit behind the others' records; caught up,
    it asks for everything: narrowed, it waited for one partition while the others' records,
    and with them the watermarks every group waits for, sat unread (seconds of latency)."""
    consumer, _ = _fetch_consumer(tmp_path, monkeypatch)
    asked: list[Any] = []
    full = consumer.app.conf.broker_max_poll_records
    returned = [[_Record(n) for n in range(full)], [], [], [_Record(1)], []]

    async def getmany(active: Any, timeout: float) -> dict[Any, Any]:
        asked.append(active)
        return {TP("p.duis.service-requests", 0): returned.pop(0)}

    monkeypatch.setattr(consumer._thread, "getmany", getmany)
    everything = {TP("p.duis.service-requests", 0), TP("p.duis.device-responses", 1)}
    waited_for = {TP("p.duis.device-responses", 1)}
    await consumer._getmany(everything, 1.0)  # a full batch: behind
    consumer._starved = waited_for
    await consumer._getmany(everything, 1.0)
    consumer._starved = {TP("p.smi.inventory", 5)}  # not fetchable now (paused or moved)
    await consumer._getmany(everything, 1.0)
    consumer._starved = waited_for  # but the last fetch was not a full batch: caught up
    await consumer._getmany(everything, 1.0)
    await consumer._getmany(everything, 1.0)
    assert asked == [everything, waited_for, everything, everything, everything]


async def test_a_stop_waits_for_the_fetch_being_decided(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(batches: Any) -> None:
        started.set()
        await release.wait()

    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    taking = asyncio.create_task(consumer._take_fetch(_route(handler, fetch), 0))
    await started.wait()
    taking.cancel()  # what a stop does to faust's fetcher
    await asyncio.sleep(0)
    assert consumer.batch_lock.locked()  # a commit now waits for the lock
    release.set()
    async with consumer.batch_lock:
        assert _marked(consumer) == {fetch[0][0]: 7, fetch[1][0]: 10}
    with pytest.raises(asyncio.CancelledError):
        await taking


async def test_a_fetch_waits_for_the_commit_under_way_once_it_is_far_enough_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches decided during a commit are held (their outputs, under exactly_once): without
    a bound, a slow commit would let them grow without end."""
    decided: list[Any] = []

    async def handler(batches: Any) -> None:
        decided.extend(_decided(batches))

    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    consumer.commit_future = asyncio.get_running_loop().create_future()
    consumer._ahead = MAX_AHEAD - 1
    await consumer._take_fetch(_route(handler, fetch[:1]), 0)  # not yet as far
    assert len(decided) == 1 and consumer._ahead == MAX_AHEAD + 1
    taking = asyncio.create_task(consumer._take_fetch(_route(handler, fetch[1:]), 0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(decided) == 1  # waits for the commit
    consumer.commit_future.set_result(None)
    await taking
    assert decided[1] == (1, fetch[1][1])


async def test_nothing_is_decided_while_the_consumer_must_seek_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a dropped fetch the positions are past records never buffered: deciding later
    ones first would break their order."""
    decided: list[Any] = []

    async def handler(batches: Any) -> None:
        decided.extend(_decided(batches))

    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    consumer._seek_again = True
    await consumer._take_fetch(_route(handler, fetch), 0)
    assert decided == [] and _marked(consumer) == {}


async def test_a_fetch_that_fails_halfway_stops_every_commit(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    async def handler(batches: Any) -> None:
        raise KafkaTimeoutError()

    consumer, fetch = _fetch_consumer(tmp_path, monkeypatch)
    with pytest.raises(KafkaTimeoutError):
        await consumer._take_fetch(_route(handler, fetch), 0)
    assert _marked(consumer) == {}
    for _ in range(2):
        with pytest.raises(BatchFailed, match="KafkaTimeoutError"):
            await consumer.commit()


@pytest.mark.parametrize(("host", "token", "insecure", "refused"), [
    ("127.0.0.1", None, False, False), ("localhost", None, False, False),
    ("::1", None, False, False), ("0.0.0.0", None, False, True),
    ("worker-1.internal", None, False, True), ("0.0.0.0", "t0ken", False, False),
    ("0.0.0.0", None, True, False)])
def test_a_web_api_other_machines_reach_needs_a_token(host: str, token: str | None,
                                                      insecure: bool, refused: bool) -> None:
    def settings() -> Settings:
        return Settings(web_host=host, api_token=token, api_insecure=insecure)  # type: ignore[arg-type]

    if refused:
        with pytest.raises(ValueError, match="SMI_API_TOKEN"):
            settings()
    else:
        assert settings().web_host == host


def test_a_bad_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    monkeypatch.setenv("SMI_PARTITIONS", "0")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["smi: bad setting SMI_PARTITIONS=0: Input should be greater "
                                "than or equal to 1"]


def test_one_worker_per_state_directory(tmp_path: Path) -> None:
    held = lock_state(tmp_path / "app")
    with pytest.raises(ConfigError, match=rf"in use by the worker with pid {os.getpid()}"):
        lock_state(tmp_path / "app")
    held.close()  # as at the process' end, kill -9 included
    lock_state(tmp_path / "app").close()


def test_a_web_port_in_use_is_named_before_faust_starts() -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"SMI_WEB_PORT={port} on SMI_WEB_HOST=127.0.0.1"):
            check_web_port(Settings(web_port=port))
    check_web_port(Settings(web_port=port))  # free again


def test_a_broker_port_in_use_is_named_before_the_node_starts(tmp_path: Path) -> None:
    import socket

    from streams.broker import local
    from streams.errors import BrokerError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        node = local.Node(1, port, port, tmp_path)
        with pytest.raises(BrokerError, match=rf"^port {port} on 127.0.0.1 is in use"):
            local._check_free(node)
    local._check_free(node)  # free again


def test_the_producer_timeouts_come_from_the_settings(tmp_path: Path) -> None:
    app = build(tmp_path, delivery_timeout_seconds=30, transaction_timeout_seconds=20)
    producer = app.producer
    assert producer._settings_default()["request_timeout_ms"] == 30_000  # batches expire
    assert producer._settings_extra()["transaction_timeout_ms"] == 20_000
    for bad in ({"delivery_timeout_seconds": 0}, {"transaction_timeout_seconds": 901}):
        with pytest.raises(ValueError, match="timeout_seconds"):
            Settings(**bad)  # type: ignore[arg-type]


def test_under_exactly_once_a_group_waits_longer_than_two_commits_or_not_at_all() -> None:
    """Forwards and watermarks reach the other partition groups only as transactions commit:
    a shorter wait would run out every time, and the order across groups would be lost."""
    with pytest.raises(ValueError, match="SMI_MAX_TASK_IDLE=5 must be at least twice "
                       "SMI_COMMIT_INTERVAL=4 under exactly_once"):
        Settings(processing_guarantee="exactly_once", commit_interval=4, max_task_idle=5)
    Settings(processing_guarantee="exactly_once", commit_interval=4, max_task_idle=8)
    Settings(processing_guarantee="exactly_once", commit_interval=4, max_task_idle=0)
    Settings(processing_guarantee="at_least_once", commit_interval=4, max_task_idle=5)

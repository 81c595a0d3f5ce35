"""A worker cut off from its group sends nothing once it is back (at_least_once), and a commit
the group refused is not taken for done (no broker: the consumer's parts are faked)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError
from faust.types import TP

from streams import engine
from streams.emit import Emitter
from streams.errors import BatchFailed, DeliveryFailed, PartitionsLost
from streams.membership import Lease
from tests.unit.test_app import build


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(answers: list[bool | None], clock: Clock,
          in_group: bool = True) -> tuple[Lease, list[int]]:
    asked: list[int] = []

    async def heartbeat() -> bool | None:
        asked.append(1)
        clock.now += 0.5  # each answer takes a while
        return answers.pop(0)

    return Lease(heartbeat, lambda: in_group, session_timeout=10, clock=clock), asked


async def test_within_half_a_session_of_the_last_proof_nothing_is_asked() -> None:
    clock = Clock()
    held, asked = lease([], clock)
    clock.now += 4.9
    await held.hold()
    assert asked == []


async def test_past_half_a_session_one_heartbeat_asks_and_renews() -> None:
    clock = Clock()
    held, asked = lease([True], clock)
    clock.now += 6
    await held.hold()
    await held.hold()
    assert asked == [1]


async def test_a_group_that_went_on_without_the_worker_stops_it() -> None:
    clock = Clock()
    held, _ = lease([False], clock)
    clock.now += 70  # paused past the session timeout
    with pytest.raises(PartitionsLost, match="SMI_SESSION_TIMEOUT_SECONDS=10"):
        await held.hold()


async def test_a_member_id_already_forgotten_stops_it_without_asking() -> None:
    held, asked = lease([], Clock(), in_group=False)
    with pytest.raises(PartitionsLost):
        await held.hold()
    assert asked == []


async def test_no_answer_for_a_whole_session_counts_as_lost() -> None:
    clock = Clock()
    held, asked = lease([None] * 100, clock)
    clock.now += 6
    with pytest.raises(PartitionsLost):
        await held.hold()
    assert 20 <= len(asked) < 100


async def test_outputs_wait_for_the_lease_and_are_not_sent_without_it() -> None:
    sent: list[Any] = []

    async def refuse() -> None:
        raise PartitionsLost("gone")

    emitter = Emitter(app=None, input_topic="in", exactly_once=False)  # type: ignore[arg-type]

    async def send_all(pending: Any) -> None:
        sent.append(pending)

    emitter._send_all = send_all  # type: ignore[method-assign]
    await emitter.flush()  # nothing to send: nothing asked
    emitter.before_send = refuse
    await emitter.flush()
    emitter.add("out", 0, b"k", b"v")
    with pytest.raises(PartitionsLost):
        await emitter.flush()
    assert not any(sent)  # not one record


def _consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Emitter, TP]:
    """An at_least_once worker's consumer (not started), one emitter wired as the agents wire
    theirs, partition 0 decided up to offset 10 and assigned."""
    app = build(tmp_path)
    consumer = app.consumer  # type: ignore[attr-defined]
    emitter = Emitter(app=None, input_topic="in", exactly_once=False,  # type: ignore[arg-type]
                      changelog="p.changelog")
    consumer.add_outputs(emitter)
    tp = TP("p.duis.service-requests", 0)
    consumer._decided[tp] = 10
    consumer._acked.setdefault(tp, [])
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})

    async def nothing(*args: Any) -> None:
        return None

    monkeypatch.setattr(consumer.app.producer, "flush", nothing)
    monkeypatch.setattr(consumer.app.producer.buffer, "flush", nothing)
    return consumer, emitter, tp


def _sends_of(emitter: Emitter) -> list[Any]:
    """What ``emitter`` hands its producers from now on (nothing reaches a broker)."""
    sent: list[Any] = []

    async def send_all(pending: Any) -> None:
        sent.append(pending)

    emitter._send_all = send_all  # type: ignore[method-assign]
    return sent


async def test_a_worker_that_lost_its_partitions_writes_no_changelog_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, emitter, _ = _consumer(tmp_path, monkeypatch)
    sent = _sends_of(emitter)
    monkeypatch.setattr(consumer.lease, "in_group", lambda: False)
    emitter.add_change(0, b"00-DB", b"{}")
    with pytest.raises(PartitionsLost):
        await consumer.commit()
    assert sent == []
    with pytest.raises(Exception, match="PartitionsLost"):  # latched: no commit after it
        await consumer.commit()


async def test_changelog_records_are_not_sent_while_an_output_is_not_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record whose outputs were lost must stay the old one: a restarted worker decides the
    input again and sends them."""
    consumer, emitter, _ = _consumer(tmp_path, monkeypatch)
    sent = _sends_of(emitter)
    monkeypatch.setattr(consumer.lease, "in_group", lambda: True)
    emitter.add_change(0, b"00-DB", b"{}")
    lost = asyncio.get_running_loop().create_future()
    lost.set_exception(KafkaTimeoutError())
    emitter._delivered(lost, "smi.status-corrections", 0, 1)
    with pytest.raises(DeliveryFailed):
        await consumer.commit()
    assert sent == []


async def test_a_commit_the_group_refused_is_not_taken_for_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust returns False for a commit refused because the group rebalanced, and records its
    offsets as committed all the same: the next commit would skip them."""
    consumer, _, tp = _consumer(tmp_path, monkeypatch)
    consumer._committed_offset[tp] = 4

    async def refused(offsets: Any, *args: Any) -> bool:
        consumer._committed_offset.update(offsets)  # as faust does
        return False

    monkeypatch.setattr(consumer, "_commit_offsets", refused)
    assert not await consumer.commit()
    assert consumer._committed_offset[tp] == 4
    assert consumer.revoking  # nothing more is decided until the rebalance


@pytest.mark.parametrize(("error", "crashes"), [
    (DeliveryFailed("outputs not delivered"), True),
    (asyncio.CancelledError(), False),  # the worker is stopping
])
async def test_a_commit_failing_as_partitions_are_revoked_stops_the_worker(
    error: BaseException, crashes: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka logs an error a rebalance listener raises, and goes on with the rebalance."""
    consumer, _, tp = _consumer(tmp_path, monkeypatch)
    crashed: list[BaseException] = []

    async def failing(*args: Any, **kwargs: Any) -> bool:
        raise error

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    monkeypatch.setattr(consumer, "commit", failing)
    monkeypatch.setattr(consumer, "crash", crash)
    with pytest.raises(type(error)):
        await consumer.on_partitions_revoked({tp})
    assert crashed == ([error] if crashes else [])


async def test_partitions_revoked_are_read_again_from_what_was_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the commit is done, the worker forgets how far it decided the revoked partitions
    and what its partition groups buffered: kept, they would be committed or decided again
    in the next generation over what the new owner did meanwhile."""
    consumer, _, tp = _consumer(tmp_path, monkeypatch)
    cleared: list[str] = []
    for route in consumer.batch_routes.values():
        monkeypatch.setattr(route.ordering, "clear", lambda: cleared.append("cleared"))

    async def committed(*args: Any, **kwargs: Any) -> bool:
        return True

    async def faust_handler(self: Any, revoked: set[TP]) -> None:
        return None

    monkeypatch.setattr(consumer, "commit", committed)
    monkeypatch.setattr(engine.Consumer, "on_partitions_revoked", faust_handler)  # faust's
    rebalances = consumer._rebalances
    await consumer.on_partitions_revoked({tp})
    assert tp not in consumer._decided and consumer._rebalances == rebalances + 1
    assert cleared and len(cleared) == len(set(consumer.batch_routes.values()))


async def test_a_rebalance_timeout_shorter_than_the_session_shortens_the_lease() -> None:
    """Once a rebalance begins the group waits that long for a member to join again, however
    recent its last heartbeat."""
    clock = Clock()
    asked: list[int] = []

    async def heartbeat() -> bool | None:
        asked.append(1)
        return True

    held = Lease(heartbeat, lambda: True, session_timeout=600, rebalance_timeout=60, clock=clock)
    clock.now += 31
    await held.hold()
    assert asked == [1]


async def test_a_heartbeat_that_never_answers_does_not_hold_the_worker_for_ever() -> None:
    async def hang() -> bool | None:
        await asyncio.sleep(3600)  # no coordinator found, say
        return True

    held = Lease(hang, lambda: True, session_timeout=0.4)
    held.since -= 1
    with pytest.raises(PartitionsLost):
        await asyncio.wait_for(held.hold(), 5)


async def test_changelog_records_taken_and_not_sent_stop_every_later_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever stops the commit between taking the records and sending them (here the
    heartbeat's own error): the stop's commit must not pass them."""
    consumer, emitter, _ = _consumer(tmp_path, monkeypatch)

    async def failing() -> bool | None:
        raise KafkaError("the coordinator refused")

    monkeypatch.setattr(consumer.lease, "heartbeat", failing)
    monkeypatch.setattr(consumer.lease, "in_group", lambda: True)
    consumer.lease.since -= 3600
    emitter.add_change(0, b"00-DB", b"{}")
    with pytest.raises(KafkaError):
        await consumer.commit()
    with pytest.raises(BatchFailed):
        await consumer.commit()

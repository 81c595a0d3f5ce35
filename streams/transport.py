"""faust's Kafka transport, with commits that line up with the work they commit.

faust-streaming 0.15.3 commits offsets on a timer, concurrently with the agents. Under
``exactly_once`` that lets a transaction hold the effects of an event without its offset, or
the offset without the effects, which shows as corrections lost or emitted twice after a
rebalance or a crash (faust #323, #517). The holes, and what closes each:

1. A commit can fall between an event's outputs and its ack. Agents decide a batch and ack its
   events while they hold :attr:`Consumer.batch_lock`; a commit takes the same lock.
2. Table writes wait in faust's producer buffer (``send_soon``), and under ``exactly_once`` a
   commit does not flush it, so a write could land in the transaction after its offset's. A
   commit here flushes the buffer first, and first of all has the agents send the changelog
   records they hold back (``take_changes``, ``streams/emit.py``).
3. On a rebalance (aiokafka revokes every partition: the eager protocol) faust forgets the
   acks it has not committed yet, and the partitions a worker keeps restart from the last
   commit while their open transaction still holds those events' effects: decided twice, both
   committed. Here a rebalance first commits what was acked; events read before it that an
   agent has not started are dropped unacked (:meth:`Consumer.is_current`) and read again
   from the committed offsets. The app runs with ``stream_wait_empty=False``: faust's own
   wait would end the transactions early and need those dropped events acked.
4. Under ``exactly_once`` faust takes a changelog's end offset from the last fetch response,
   which it has not had for a partition just assigned: -1, so recovery either skipped the
   changelog or stopped with "persisted offset is higher than the highwater". Here it is
   asked of the broker (ListOffsets, read_committed: the last stable offset).

Under ``at_least_once`` a commit holds the batch lock only while it notes the offsets and
takes the changelog records. It waits for the broker without the lock while the agents go on
(their events are in the next commit), but no further than :data:`MAX_AHEAD` events: past
that they wait for the commit, which bounds what is held in memory. Batches yield to the
event loop between fetches, or a busy worker would starve the commit's sends. Under
``exactly_once`` the agents go on too while the transactions commit, but they hold their
outputs (:attr:`Consumer.holding`): sent meanwhile, an output would join the transaction
that commits the older offsets. The commit sends what they held once the next transactions
have begun, under the lock, before any later batch's outputs; their changelog records and
offsets go in the next commit, as always. A commit that held the lock throughout stopped
the agents for most of every commit interval. Every partition's transaction
commits side by side (:class:`Producer`); faust commits them one after the other.

The device stream does not go through faust's streams at all (:attr:`Consumer.batch_routes`).
faust hands a fetch to its streams one message at a time, each with two new tasks, a queue
hop and its own ack: that capped a faust worker at about a tenth of what plain aiokafka
reads (``docs/performance.md``). Here a fetch's records go to their handler at once, a batch
per partition, under the batch lock, and each partition's next offset is what a commit
commits.

Under ``at_least_once`` nothing fences a worker that was cut off from its group past the
session timeout and then resumes: it asks the broker before it sends (``streams/membership.py``),
and stops if the group went on without it. A commit the group refuses because it rebalanced
(faust returns False and records the offsets as committed all the same) is not taken for done:
the worker decides nothing more until the rebalance has begun, and what it had decided is read
again from the offsets the broker holds. A commit that fails while partitions are being revoked
stops the worker, where aiokafka would log it and join the next generation.

Every producer looks for a coordinator again when the broker it asked goes away
(:class:`_Producer`): aiokafka 0.14 asks a random broker where the group or transaction
coordinator is, and a connection to it closing (that broker stopping) ends the sender for good,
which crashed an ``exactly_once`` worker when one broker of three stopped (aio-libs/aiokafka
#1151 is the same hole one step later).

The transport is registered as ``smikafka://``; the app uses it for every broker URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import aiokafka
import faust
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faust.transport import drivers
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, EventT

from streams import engine
from streams.emit import transaction_of
from streams.errors import BatchFailed, DeliveryFailed, PartitionsLost
from streams.membership import Lease
from streams.order import Ordering, PartitionGroup, Step

if TYPE_CHECKING:
    from streams.app import SmiApp

SCHEME = "smikafka"
MAX_AHEAD = 5_000  # events decided while a commit is under way, before waiting for it

# what the partition groups of a route let be decided now, each group's steps in order
BatchHandler = Callable[[Sequence[tuple[PartitionGroup, list[Step]]]], Awaitable[None]]


class Outputs(Protocol):
    """What the agents send through (``streams.emit.Emitter``), as a commit sees it."""

    holding: Callable[[], bool]

    def take_changes(self) -> Callable[[], Awaitable[None]] | None: ...
    def take_used(self) -> set[str]: ...
    async def check_delivered(self) -> None: ...
    async def flush(self) -> None: ...

    before_send: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Wiring:
    """What the consumer takes from the app: the route of each device topic's records, what
    every commit sends and checks, how long a fetch waits at the broker, and who is told each
    commit's seconds."""

    routes: dict[str, BatchRoute]
    outputs: Sequence[Outputs]
    fetch_max_wait: float
    on_commit: Callable[[float], None]


@dataclass(frozen=True, eq=False)
class BatchRoute:
    """Where a topic's records go instead of faust's streams: into ``ordering``, and from
    there to ``handler`` in order, once ``ready`` is set."""

    handler: BatchHandler
    ready: asyncio.Event
    ordering: Ordering


def fetched_to_end(consumer: aiokafka.AIOKafkaConsumer, tp: aiokafka.TopicPartition) -> bool:
    """Whether ``consumer`` has returned every record of ``tp`` up to the end the last fetch
    response gave; False while either is unknown."""
    state = _fetch_state(consumer, tp)
    end = fetched_end(state)
    return end is not None and state.position >= end


def _fetch_state(consumer: aiokafka.AIOKafkaConsumer, tp: aiokafka.TopicPartition) -> Any:
    """aiokafka's state of an assigned partition with a known position, else None. (aiokafka
    keeps the position it has returned records to in its subscription state, which it only
    exposes as a coroutine.)"""
    state = engine.partition_state(consumer, tp)
    return state if state is not None and state.has_valid_position else None


def fetched_end(state: Any) -> int | None:
    """The end of a partition as the last fetch response gave it, its last stable offset (the
    worker reads committed records only); None: not known yet."""
    if state is None:
        return None
    return cast(int | None, state.lso)


class ConsumerThread(engine.ConsumerThread):
    def create_worker_consumer(self, consumer: aiokafka.AIOKafkaConsumer
                               ) -> aiokafka.AIOKafkaConsumer:
        # faust passes 1.5 s; the fetcher reads this at start (see Settings.fetch_max_wait)
        engine.set_fetch_max_wait(consumer, cast(Consumer, self.consumer).fetch_max_wait)
        # faust reads uncommitted records under at_least_once: records of a transaction its
        # producer aborted would be decided, which smi replay and smi verify never see
        engine.read_committed(consumer)
        return consumer

    async def end_offsets(self, partitions: list[TP]) -> Mapping[TP, int]:
        # asked of the broker: faust takes them from the last fetch response (-1 for a
        # partition just assigned; see the module docstring)
        return cast(Mapping[TP, int], await self.aiokafka_consumer.end_offsets(partitions))


class Consumer(engine.Consumer):
    """The aiokafka consumer, committing only whole batches (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_lock = asyncio.Lock()
        self.revoking = False
        # what the agents hold back until a commit (their changelog records): each call takes
        # them and returns what sends them
        self.take_changes: list[Callable[[], Callable[[], Awaitable[None]] | None]] = []
        # what must hold before offsets are committed (every output delivered)
        self.commit_checks: list[Callable[[], Awaitable[None]]] = []
        # what sends the outputs the agents hold while a transaction commits (exactly_once)
        self.output_flushes: list[Callable[[], Awaitable[None]]] = []
        # what tells the transactions sent to since the last commit (exactly_once)
        self.transactions_used: list[Callable[[], set[str]]] = []
        self.holding = False
        # topic -> route of its batches, handed over when the app is built (:meth:`attach`)
        self.batch_routes: dict[str, BatchRoute] = {}
        self.fetch_max_wait = 1.5  # seconds; faust's, until the app's settings say
        self._decided: dict[TP, int] = {}  # next offset to commit, of partitions taken in batches
        self._ahead = 0  # events decided since the last commit took its offsets
        self._rebalances = 0  # partitions revoked so far: a fetch that spans one is read again
        self._seek_again = False  # records were dropped: seek to the committed offsets
        self._starved: set[TP] = set()  # partitions a group waits for: fetched first
        self._behind = False  # the last fetch was a full batch: aiokafka may hold more
        # what stopped a fetch (or an exactly_once commit) halfway, if one did
        self.failed: BaseException | None = None
        self.commit_error: BaseException | None = None  # what the last commit raised, if it did
        self.on_commit: Callable[[float], None] = _ignore  # told each commit's seconds
        conf = self.app.conf
        self.lease = Lease(self._heartbeat, self._in_group, conf.broker_session_timeout,
                           conf.broker_rebalance_timeout)
        # made by faust once the worker runs, after create_app: the app is built by then (and
        # faust fixes whether it commits in transactions when it makes the consumer)
        self.attach(cast("SmiApp", self.app).smi.wiring)

    def lag(self, topics: set[str]) -> dict[TP, int]:
        """Per assigned partition of ``topics`` whose end a fetch has told: the records up to
        that end no commit has passed yet. Under exactly_once a transaction's marker takes an
        offset after its last record: a partition read, decided and committed to its last
        record has no lag."""
        consumer = self.thread.aiokafka_consumer
        lags: dict[TP, int] = {}
        for tp in self.assignment():
            if tp.topic not in topics:
                continue
            state = _fetch_state(consumer, tp)
            end = fetched_end(state)
            if end is not None:
                lags[tp] = self._lag_of(tp, end, state.position)
        return lags

    def _lag_of(self, tp: TP, end: int, position: int) -> int:
        committed = self.committed_offsets.get(tp)
        committed = committed if committed is not None and committed >= 0 else 0
        if position >= end and committed >= self._decided.get(tp, committed):
            return 0
        return max(end - committed, 0)

    def new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def attach(self, wiring: Wiring) -> None:
        """Take what the app built for the consumer (``streams/app.py``)."""
        self.batch_routes = wiring.routes
        for each in wiring.outputs:
            self.add_outputs(each)
        self.fetch_max_wait = wiring.fetch_max_wait
        self.on_commit = wiring.on_commit

    def add_outputs(self, outputs: Outputs) -> None:
        """Commits send and check what ``outputs`` hold back, and it holds its outputs while
        exactly_once transactions commit."""
        self.take_changes.append(outputs.take_changes)
        self.commit_checks.append(outputs.check_delivered)
        self.output_flushes.append(outputs.flush)
        self.transactions_used.append(outputs.take_used)
        outputs.holding = lambda: self.holding
        outputs.before_send = self._before_send

    async def _before_send(self) -> None:
        if not self.in_transaction:  # exactly_once: the new owner's transactions fence it
            await self._hold_lease()

    def is_current(self, event: EventT) -> bool:
        """False for an event read before the rebalance under way or the last one: it will be
        read again from the committed offset, so it must be neither decided nor acked."""
        generation = getattr(event.message, "generation_id", None)
        return not self.revoking and generation == self.app.consumer_generation_id

    async def next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:
        rebalances = self._rebalances
        records, active = await super().next_records(timeout)
        if self.batch_routes and records is not None:
            records = await self._take_batches(records, rebalances)
        return records, active

    async def _take_batches(self, records: Mapping[Any, list[ConsumerRecord]],
                            rebalances: int) -> dict[Any, list[ConsumerRecord]]:
        """Buffer each route's records in its partition groups and decide what their order
        allows (also when nothing new came: a wait may have run out); return the others
        for faust."""
        if await self._fetched_across_a_rebalance(records, rebalances):
            records = {tp: batch for tp, batch in records.items()
                       if tp.topic not in self.batch_routes}
        rest = {}
        for each in set(self.batch_routes.values()):
            each.ordering.generation = self.app.consumer_generation_id  # for groups it makes
        for tp, batch in records.items():
            route = self.batch_routes.get(tp.topic)
            if route is None:
                rest[tp] = batch
            elif batch:
                route.ordering.add(tp.topic, tp.partition, batch)
        generation = self.app.consumer_generation_id
        for route in set(self.batch_routes.values()):
            await self._take_fetch(route, generation)
            await asyncio.sleep(0)  # the commit's sends and the producer's I/O go on
        return rest

    async def _take_fetch(self, route: BatchRoute, generation: int) -> None:
        """All the partition groups at once: under at_least_once their outputs leave in one
        request per broker, where a partition at a time cost a request each (most of the
        broker's work, and a sixth of the worker's, at a few thousand events a second)."""
        if not route.ready.is_set():
            self._pause_full(route.ordering)  # the records wait in their groups, bounded
            return
        if self._ahead >= MAX_AHEAD and self.commit_future is not None:
            await asyncio.shield(self.commit_future)
        # shielded: a stop cancels the fetcher, then commits; that commit must not find a fetch
        # half decided (records written and held for the changelog, offsets not marked)
        await asyncio.shield(self._decide_fetch(route, generation))

    async def _fetched_across_a_rebalance(self, records: Mapping[Any, list[ConsumerRecord]],
                                          rebalances: int) -> bool:
        """Whether a fetch's records of the device topics must be dropped: it spanned a
        rebalance, or came before the tables were recovered. Whether such records come from
        before or after the seek to the committed offsets that ends a rebalance cannot be
        told, so once the rebalance is over the consumer seeks there again, and drops what
        that fetch brought too."""
        stale = rebalances != self._rebalances or not self._current(
            self.app.consumer_generation_id)
        if stale and any(batch and tp.topic in self.batch_routes
                         for tp, batch in records.items()):
            self._seek_again = True
        if self._seek_again and self._current(self.app.consumer_generation_id):
            self._seek_again = False
            await self.perform_seek()
            return True
        return stale

    def _current(self, generation: int) -> bool:
        """False from the start of a rebalance until it is over and its tables recovered
        (faust may resume the flow while it still reads changelogs), and for what was read
        before it."""
        return (not self.revoking and self.flow_active and not self.app.rebalancing
                and generation == self.app.consumer_generation_id)

    async def _decide_fetch(self, route: BatchRoute, generation: int) -> None:
        async with self.batch_lock:
            if not self._current(generation) or self._seek_again:
                # a group made now would read a table not yet recovered; and after a dropped
                # fetch the positions are past records never buffered, until the seek
                return
            partitions = sorted({tp.partition for tp in self.assignment()
                                 if tp.topic in self.batch_routes})
            taken = route.ordering.take(partitions, self._caught_up, time.monotonic(),
                                        self.app.conf.broker_max_poll_records)
            if taken:
                try:
                    await route.handler(taken)
                except BaseException as exc:
                    self.failed = exc
                    raise
                self._mark_decided(taken, route.ordering)
            starved = route.ordering.starved()
            # with every partition that has nothing buffered: other groups may wait for its
            # group's watermark, which moves on only when it is fetched
            self._starved = {TP(*starved), *(TP(*pair) for pair in route.ordering.empty())
                             } if starved else set()
            self._pause_full(route.ordering)

    def _mark_decided(self, taken: Sequence[tuple[PartitionGroup, list[Step]]],
                      ordering: Ordering) -> None:
        """Each partition's next offset is its first record still buffered to decide (those
        before it are decided or forwarded), else the one after the last fetched: what is
        still buffered is read again after a rebalance or a crash. The repartition
        partition's is its first forward not yet decided (forwards are decided in key order,
        not in the order they were written)."""
        for group, steps in taken:
            offsets = {topic: group.committable(topic) for topic in ordering.topics}
            if ordering.repartition:
                offsets[ordering.repartition] = group.repartition_committable()
            for topic, offset in offsets.items():
                if offset is None:
                    continue
                tp = aiokafka.TopicPartition(topic, group.partition)
                self._decided[tp] = offset
                self.mark_read(tp, offset - 1)
            self._ahead += len(steps)

    async def fetch_records(self, partitions: set[TP] | None, timeout: float) -> Any:
        """Behind, what the group waiting longest waits for, first (with the partitions that
        have nothing buffered and the repartition partitions). aiokafka hands over what it
        has fetched a partition after the other, up to a batch a call, in the order it
        fetched them: partitions whose groups could go on (or had just been waiting too)
        were served again and again while the one another group waited for sat behind them,
        and on a 200,000-message backlog every group's wait ran out. Only behind, though (the
        last call returned a full batch, so aiokafka may hold more): caught up, one call
        returns everything fetched, while a narrowed one waited at the broker for its
        partitions with the others' records unread, and with them the watermarks every group
        waits for; live decisions fell seconds behind their input."""
        starved = self._starved & partitions if self._behind and partitions else set()
        if starved:  # and what other groups forward and say how far they have fetched
            repartition = {route.ordering.repartition for route in self.batch_routes.values()}
            starved |= {tp for tp in partitions or () if tp.topic in repartition}
        records = await super().fetch_records(starved or partitions, timeout)
        self._behind = sum(map(len, records.values())) >= self.app.conf.broker_max_poll_records
        return records

    def _caught_up(self, topic: str, partition: int) -> bool:
        """Whether the consumer has handed over everything the broker has of a partition, as
        far as the last fetch response said (its last stable offset: the worker reads
        committed records only)."""
        consumer = self.thread.aiokafka_consumer
        return fetched_to_end(consumer, aiokafka.TopicPartition(topic, partition))

    def _pause_full(self, ordering: Ordering) -> None:
        """Stop fetching a partition whose buffer is full (the group waits on another topic),
        and fetch it again once it has drained to half."""
        full, drained = ordering.full_and_drained()
        if full:
            self.pause_partitions({TP(topic, p) for topic, p in full})
        if drained:
            self.resume_partitions({TP(topic, p) for topic, p in drained})

    def offset_to_commit(self, tp: TP) -> int | None:
        decided = self._decided.get(tp)
        return decided if decided is not None else super().offset_to_commit(tp)

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        self._refuse_after_failure()
        while self.commit_future is not None:  # it covers less than this call must: wait, then go
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.commit_future)
        self._refuse_after_failure()  # the commit waited for may have failed
        self.commit_future = asyncio.Future(loop=self.loop)
        started = time.monotonic()
        try:
            if self.app.in_transaction:
                committed = await self._commit_transactions(topics, start_new_transaction)
            else:
                committed = await self._commit_snapshot(topics)
        except BaseException as exc:
            self.commit_error = exc  # the stop is not clean (streams/worker.py)
            raise
        finally:
            self.on_commit(time.monotonic() - started)
            future, self.commit_future = self.commit_future, None
            if not future.done():
                future.set_result(None)
        self.commit_error = None
        return committed

    def _refuse_after_failure(self) -> None:
        """Raise once a fetch, a delivery or a transaction has failed: called again under the
        batch lock, since a fetch that failed while a commit waited for the lock latched it."""
        if self.failed is not None:
            raise BatchFailed(f"a fetch or a transaction failed halfway ({self.failed!r}): "
                              "nothing more is committed") from self.failed

    async def _commit_transactions(self, topics: Any, start_new_transaction: bool) -> bool:
        """Under exactly_once: what is decided now goes into the open transactions, which
        commit with its offsets. Batches decided meanwhile keep their outputs (``holding``)
        until the next transactions have begun: sent now, they would join the transactions
        that commit the older offsets."""
        async with self.batch_lock:
            self._refuse_after_failure()
            try:
                await self._flush_outputs()  # held while the last commit was under way
                await self._send_changes()
                await self.app.producer.buffer.flush()  # table writes before their offsets
                await self._check_delivered()
            except Exception as exc:  # taken, and not known to be sent
                self.failed = self.failed or exc
                raise
            offsets = self.committable(topics)
            quiet = self._without_offsets(offsets)
            self._ahead = 0
            self.holding = True
        try:
            committed = bool(offsets) and await self.commit_offsets(offsets,
                                                                    start_new_transaction)
            if quiet:  # its transaction must end too, or it holds back every reader
                await self.app.producer.commit_transactions(
                    {tid: {} for tid in quiet}, self.app.conf.id, start_new_transaction)
            if self.app.crashed:  # faust crashes the app for a fenced producer, and returns
                raise BatchFailed("a transaction could not commit: the worker stops")
        except BaseException as exc:
            # what the agents hold stays held, and nothing more is committed: no transaction
            # is known to be open for it, and its offsets must not commit without it
            self.failed = exc
            raise
        async with self.batch_lock:
            self.holding = False
            # only the stop's last commit begins no transaction, once faust has stopped the
            # fetcher: nothing was decided during it
            if start_new_transaction:
                try:
                    await self._flush_outputs()
                except Exception as exc:  # held outputs taken, and not known to be sent
                    self.failed = exc
                    raise
        return committed

    async def _commit_snapshot(self, topics: Any) -> bool:
        async with self.batch_lock:  # what is decided now, no more
            self._refuse_after_failure()
            offsets = self.committable(topics)
            sends = [send for take in self.take_changes if (send := take()) is not None]
            self._ahead = 0
        try:
            await self._send_after_outputs(sends)
        except BaseException as exc:
            if sends:  # taken and not sent: no commit may pass them, the stop's included
                self.failed = self.failed or exc
            raise
        return bool(offsets) and await self._commit_in_generation(offsets)

    async def _send_after_outputs(self, sends: list[Callable[[], Awaitable[None]]]) -> None:
        """The outputs to the broker, then the changelog records: a record whose outputs
        failed must stay the old one, so that a restarted worker decides the input again and
        sends them."""
        await self.app.producer.flush()
        await self._check_delivered()
        if sends:  # a new owner's records must not be overwritten by older ones
            await self._hold_lease()
        for send in sends:
            await send()
        await self.app.producer.buffer.flush()
        await self.app.producer.flush()
        await self._check_delivered()

    async def _commit_in_generation(self, offsets: Mapping[TP, int]) -> bool:
        """Commit; if the group refused it because it rebalanced, decide nothing more until
        the rebalance (aiokafka has asked to rejoin), and forget that faust took the offsets
        for committed: the partitions kept are read again from what the broker holds."""
        before = {tp: self.committed_offsets.get(tp) for tp in offsets}
        sent = self.lease.clock()
        if await self.commit_offsets(offsets):
            self.lease.renewed(sent)
            return True
        refused = set(offsets) & self.assignment()
        if refused:
            self.committed_offsets.update({tp: before[tp] for tp in refused})
            self.revoking = True  # until the partitions are assigned again
            log.warning("the group rebalanced before offsets of %d partitions could commit: "
                        "they are read again from the last commit", len(refused))
        return False

    async def _hold_lease(self) -> None:
        try:
            await self.lease.hold()
        except PartitionsLost as exc:
            self.failed = exc
            await self.crash(exc)  # also when an agent's flush finds it, which faust restarts
            raise

    def _without_offsets(self, offsets: Mapping[TP, int]) -> set[str]:
        """The transactions written to that commit no input offset: a partition group that
        only applied a CPL removal sent outputs and changelog records, but decided none of
        its own records."""
        used = set().union(*(take() for take in self.transactions_used))
        if not used:
            return used
        app = cast(faust.App, self.app)
        return used - {transaction_of(app, tp.topic, tp.partition) for tp in offsets}

    async def _flush_outputs(self) -> None:
        for flush in self.output_flushes:
            await flush()

    async def _send_changes(self) -> None:
        for take in self.take_changes:
            if (send := take()) is not None:
                await send()

    async def _check_delivered(self) -> None:
        """Raise if an output was not delivered, and latch it: no later commit (the timer's,
        a rebalance's, the one at the stop) may pass it."""
        try:
            for check in self.commit_checks:
                await check()
        except DeliveryFailed as exc:
            self.failed = exc
            raise

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.revoking = True
        try:
            await self.commit()  # faust's own handler drops what is acked but not committed
        except asyncio.CancelledError:
            raise  # the worker is stopping
        except Exception as exc:
            # aiokafka logs a listener's error and goes on with the rebalance: the worker would
            # join the next generation with what it could not commit
            if not self.should_stop:
                log.error("a commit failed as partitions were revoked: the worker stops: %s",
                          exc)
                await self.crash(exc)
            raise
        for tp in revoked:
            self._decided.pop(tp, None)
        self._rebalances += 1
        self._starved = set()
        for route in set(self.batch_routes.values()):
            route.ordering.clear()  # read again from the committed offsets
        await super().on_partitions_revoked(revoked)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Every partition to its committed offset. aiokafka seeks only those committed past
        offset 0 and leaves the others where its fetcher has got to: records of one taken in
        a fetch that spanned a rebalance (dropped, :meth:`_fetched_across_a_rebalance`)
        would never be read. A device topic's partition with nothing committed goes back to
        its start, as the reset policy (earliest) would put it."""
        committed = await super().seek_to_committed()
        unsought = [aiokafka.TopicPartition(tp.topic, tp.partition)
                    for tp, offset in committed.items()
                    if not offset and tp.topic in self.batch_routes]
        if unsought:
            consumer = self.thread.aiokafka_consumer
            await self.thread.call_thread(consumer.seek_to_beginning, *unsought)
        return committed

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        await super().on_partitions_assigned(assigned, generation_id)
        self.revoking = False

    async def _heartbeat(self) -> bool | None:
        consumer = self.thread.aiokafka_consumer
        return cast(bool | None, await self.thread.call_thread(engine.heartbeat, consumer))

    def _in_group(self) -> bool:
        return engine.in_group(self.thread.aiokafka_consumer)


log = logging.getLogger(__name__)


def _ignore(seconds: float) -> None:
    return None


class _Producer(aiokafka.AIOKafkaProducer):
    """aiokafka's producer, whose sender asks again where a coordinator is when the broker it
    asked closed the connection, rather than stopping (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        backoff = kwargs.get("retry_backoff_ms", 100) / 1000
        engine.retry_coordinator_lookup(
            self, lambda find: retrying_lookup(find, self.client, backoff))


def retrying_lookup(find: Callable[[Any, str], Awaitable[int]], client: Any, backoff: float
                    ) -> Callable[[Any, str], Awaitable[int]]:
    """``find``, asked again after a metadata refresh and ``backoff`` while it fails for a
    reason that may pass."""

    async def lookup(kind: Any, key: str) -> int:
        while True:
            try:
                return await find(kind, key)
            except KafkaError as err:  # aiokafka wraps the cause in a plain KafkaError
                if not getattr(err.__cause__, "retriable", False):
                    raise
                driver.logger.warning("finding the coordinator for %s failed (%r): retrying",
                                      key, err.__cause__)
            await client.force_metadata_update()
            await asyncio.sleep(backoff)

    return lookup


class Producer(engine.Producer):
    """faust's producer, committing its transactions side by side."""

    producer_class = _Producer

    def settings_extra(self, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        smi = cast("SmiApp", self.app).smi.settings
        return {**settings,
                "transaction_timeout_ms": round(smi.transaction_timeout_seconds * 1000)}

    async def commit_transactions(
        self, tid_to_offset_map: Mapping[str, Mapping[TP, int]], group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        # faust commits one partition's transaction after the other, each a few round trips
        # to the broker: they are independent, so commit them together. All of them end
        # before an error is raised, so the outputs held meanwhile (Consumer.holding) never
        # meet a transaction that is still committing.
        results = await asyncio.gather(*(
            self._commit_one(tid, offsets, group_id, start_new_transaction)
            for tid, offsets in tid_to_offset_map.items()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _commit_one(self, transactional_id: str, offsets: Mapping[TP, int],
                          group_id: str, start_new_transaction: bool) -> None:
        async with self.transaction_lock(transactional_id):
            producer = self.transaction(transactional_id)
            if producer is None:
                driver.logger.warning("commit for unknown transaction %s", transactional_id)
                return
            if offsets:
                await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()


class Transport(driver.Transport):
    Consumer = Consumer
    Producer = Producer


drivers.TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")

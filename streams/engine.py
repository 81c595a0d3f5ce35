"""The one module that reaches into private parts of faust-streaming and aiokafka by name.

Both are pinned (pyproject.toml), and ``tests/unit/test_engine.py`` fails, naming the part,
when an upgrade renames or drops one. The rest of the worker calls these functions, and
subclasses the classes at the end, which override faust's private methods to call public ones
and give its private state public names: no other module overrides or reads a private part
of either library (that test checks it too). ruff's SLF001 (private member access) is
allowed here only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import aiokafka
from aiokafka.protocol.group import JoinGroupRequest
from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

# --- aiokafka ------------------------------------------------------------------------------


def partition_state(consumer: Any, tp: Any) -> Any:
    """aiokafka's state of an assigned partition (position, highwater, last stable offset),
    which it exposes only through coroutines; None when it is not assigned."""
    subscription = consumer._subscription.subscription
    assignment = subscription and subscription.assignment
    return assignment.state_value(tp) if assignment else None


def set_fetch_max_wait(consumer: Any, seconds: float) -> None:
    """How long a fetch waits at the broker: read by aiokafka's fetcher when it starts."""
    consumer._fetch_max_wait_ms = round(seconds * 1000)


def read_committed(consumer: Any) -> None:
    """Read committed records only: read by aiokafka's fetcher when it starts."""
    consumer._isolation_level = "read_committed"


def retry_coordinator_lookup(producer: Any,
                             wrap: Callable[[Callable[..., Awaitable[int]]],
                                            Callable[..., Awaitable[int]]]) -> None:
    """Put ``wrap`` around the sender's lookup of a coordinator."""
    sender = producer._sender
    sender._find_coordinator = wrap(sender._find_coordinator)


def in_group(consumer: Any) -> bool:
    """Whether the consumer still holds its member ID: aiokafka forgets it when a heartbeat or
    a commit hears that the group went on without this member."""
    coordinator = consumer._coordinator
    return coordinator is None or coordinator.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID


async def heartbeat(consumer: Any) -> bool | None:
    """One heartbeat now, in the consumer's generation: True when the broker takes it, False
    when the broker says the group went on without this member (aiokafka then forgets its
    generation and rejoins), None when there was no answer to tell."""
    coordinator = consumer._coordinator
    if coordinator is None or not in_group(consumer):
        return coordinator is None
    await coordinator.ensure_coordinator_known()
    if await coordinator._do_heartbeat():  # a rebalance under way counts: still a member
        return True
    return False if not in_group(consumer) else None


# --- faust ---------------------------------------------------------------------------------


def plain_producer(producer: Any) -> Any:
    """The aiokafka producer behind faust's, outside transactions."""
    return producer._ensure_producer()


def transaction_producer(producer: Any, transactional_id: str) -> Any:
    """The aiokafka producer of one exactly_once transaction."""
    return producer._transaction_producers[transactional_id]


def queued_batch(producer: Any, tp: aiokafka.TopicPartition) -> tuple[Any, Any] | None:
    """The record batch of ``tp`` that ``producer`` holds while a request to its broker is in
    flight (its sender has not taken it yet), as its builder, which takes more records as
    aiokafka's own ``send`` adds them, and the future of its delivery; None if there is none,
    or if the producer failed or closed, or its transaction is not open (its next send raises
    why)."""
    accumulator, transactions = producer._message_accumulator, producer._txn_manager
    if accumulator._exception is not None or accumulator._closed:
        return None
    if transactions is not None and transactions.transactional_id is not None and (
            not transactions.is_in_transaction()):
        return None
    queued = accumulator._batches.get(tp)
    if not queued or queued[-1].retry_count:  # a batch sent before is built: it takes none
        return None
    return queued[-1]._builder, queued[-1].future


def name_changelog(table: Any, name: str) -> Any:
    """Make the table's changelog topic again under ``name``, which faust's assignor and
    table manager then ask the table for."""
    table._changelog_topic_name = lambda: name
    return table._new_changelog_topic()


def rocksdb_partition(store: Any, partition: int) -> Any:
    """The RocksDB database of one partition of a faust RocksDB store (opened if need be)."""
    return store._db_for_partition(partition)


def rocksdb_open(store: Any) -> Iterable[Any]:
    """The databases a faust RocksDB store has open."""
    return list(store._dbs.values())


# --- the classes the worker subclasses -----------------------------------------------------


class ConsumerThread(driver.AIOKafkaConsumerThread):
    """faust's thread that drives the aiokafka consumer."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        return self.create_worker_consumer(super()._create_worker_consumer(transport))

    def create_worker_consumer(self, consumer: aiokafka.AIOKafkaConsumer
                               ) -> aiokafka.AIOKafkaConsumer:
        """The consumer faust made, before it starts."""
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        return await self.end_offsets(partitions)

    async def end_offsets(self, partitions: list[TP]) -> Mapping[TP, int]:
        """The partitions' end offsets (faust takes them from the last fetch response)."""
        return await super()._highwaters(partitions)

    @property
    def aiokafka_consumer(self) -> aiokafka.AIOKafkaConsumer:
        """The aiokafka consumer this thread drives."""
        return self._ensure_consumer()


class Consumer(driver.Consumer):
    """faust's consumer: its fetch, the offsets it commits and its commit under public
    names, which the worker's consumer (``streams/transport.py``) overrides or calls."""

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return self.new_consumer_thread()

    def new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return super()._new_consumer_thread()

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:
        return await self.next_records(timeout)

    async def next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:
        """The next fetch's records, and the partitions it was asked for."""
        return await super()._wait_next_records(timeout)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        return await self.fetch_records(active_partitions, timeout)

    async def fetch_records(self, partitions: set[TP] | None, timeout: float) -> Any:
        """What aiokafka has fetched of ``partitions`` (None: all), up to a batch."""
        return await super()._getmany(partitions, timeout)

    def _new_offset(self, tp: TP) -> int | None:
        return self.offset_to_commit(tp)

    def offset_to_commit(self, tp: TP) -> int | None:
        """The offset a commit would commit for ``tp`` (None: nothing new)."""
        return super()._new_offset(tp)

    def committable(self, topics: Any) -> dict[TP, int]:
        """What a commit of ``topics`` (None: all) would commit now."""
        return self._filter_committable_offsets(self._filter_tps_with_pending_acks(topics))

    async def commit_offsets(self, offsets: Mapping[TP, int],
                             start_new_transaction: bool = True) -> bool:
        """Commit these offsets (in the open transactions, under exactly_once)."""
        return await self._commit_offsets(offsets, start_new_transaction)

    def mark_read(self, tp: TP, offset: int) -> None:
        """Records of ``tp`` up to ``offset`` were read and acked: faust commits past them."""
        self._read_offset[tp] = offset
        self._acked.setdefault(tp, [])  # faust commits the partitions listed there

    @property
    def thread(self) -> Any:
        return self._thread

    @property
    def committed_offsets(self) -> MutableMapping[TP, int | None]:
        """What faust takes for committed, per partition."""
        return self._committed_offset

    @property
    def commit_future(self) -> asyncio.Future[None] | None:
        """Set while a commit is under way."""
        return self._commit_fut

    @commit_future.setter
    def commit_future(self, future: asyncio.Future[None] | None) -> None:
        self._commit_fut = future


class Producer(driver.Producer):
    """faust's producer: the aiokafka producer class it makes, its settings, and its
    transactions' producers and locks, under public names."""

    producer_class: type[aiokafka.AIOKafkaProducer] = aiokafka.AIOKafkaProducer

    @property
    def _producer_type(self) -> type[aiokafka.AIOKafkaProducer]:
        return self.producer_class

    def _settings_extra(self) -> Mapping[str, Any]:
        return self.settings_extra(super()._settings_extra())

    def settings_extra(self, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        """The settings faust adds to the aiokafka producer's."""
        return settings

    def transaction_lock(self, transactional_id: str) -> asyncio.Lock:
        return self._trn_locks[transactional_id]

    def transaction(self, transactional_id: str) -> aiokafka.AIOKafkaProducer | None:
        return self._transaction_producers.get(transactional_id)


class Recovery(FaustRecovery):
    """faust's table recovery, with a step before it reads the changelogs' end offsets."""

    async def _build_highwaters(self, consumer: Any, tps: set[TP], destination: Any,
                                title: str) -> None:
        await self.before_highwaters(tps, title)
        await super()._build_highwaters(consumer, tps, destination, title)

    async def before_highwaters(self, tps: set[TP], title: str) -> None:
        """Before faust reads the end offsets of the ``title`` ("active" or "standby")
        changelog partitions ``tps``."""


class TableManager(FaustTableManager):
    """faust's table manager, recovering with ``recovery_class``."""

    recovery_class: type[Recovery] = Recovery

    @property
    def recovery(self) -> FaustRecovery:
        if self._recovery is None:
            self._recovery = self.recovery_class(self.app, self, beacon=self.beacon,
                                                 loop=self.loop)
        return self._recovery

"""The one module that reaches into private parts of faust-streaming and aiokafka by name.

Both are pinned (pyproject.toml), and ``tests/unit/test_engine.py`` fails, naming the part,
when an upgrade renames or drops one. The rest of the worker calls these functions; the
subclasses that override private methods (``streams/transport.py``, ``streams/recovery.py``)
are listed in that test too. ruff's SLF001 (private member access) is allowed here only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.protocol.group import JoinGroupRequest

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


def aiokafka_consumer(consumer_thread: Any) -> Any:
    """The aiokafka consumer faust's consumer thread drives."""
    return consumer_thread._ensure_consumer()


def plain_producer(producer: Any) -> Any:
    """The aiokafka producer behind faust's, outside transactions."""
    return producer._ensure_producer()


def transaction_producer(producer: Any, transactional_id: str) -> Any:
    """The aiokafka producer of one exactly_once transaction."""
    return producer._transaction_producers[transactional_id]


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

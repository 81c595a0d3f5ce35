"""The private parts of faust-streaming and aiokafka the worker reaches into, by name: those
``streams/engine.py`` reads, sets or overrides, and nowhere else.

They are pinned (pyproject.toml); an upgrade that renames or drops one fails here, naming it,
rather than somewhere in a worker at run time. A class elsewhere in the worker that
overrides or reads a private part of a library class it extends fails here too.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from importlib.metadata import version
from types import ModuleType

import aiokafka.consumer.consumer
import aiokafka.consumer.group_coordinator
import aiokafka.consumer.subscription_state
import aiokafka.producer.message_accumulator
import aiokafka.producer.producer
import aiokafka.producer.sender
import aiokafka.producer.transaction_manager
import faust
import faust.stores.rocksdb
import faust.tables.base
import faust.tables.manager
import faust.tables.recovery
import faust.transport.consumer
import pytest
from faust.transport.drivers import aiokafka as driver

import streams
from streams import engine

PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}

# (where, name): methods and properties of a class, looked up on the class
METHODS = [
    # engine.Consumer: the fetch is routed, offsets are the decided ones, commits line up
    (driver.Consumer, "_wait_next_records"),
    (driver.Consumer, "_getmany"),  # a fetch asks for what a group waits for first
    (driver.Consumer, "_new_offset"),
    (driver.Consumer, "_filter_committable_offsets"),
    (driver.Consumer, "_filter_tps_with_pending_acks"),
    (driver.Consumer, "_commit_offsets"),
    (driver.Consumer, "_new_consumer_thread"),
    # public ones streams/transport.py relies on
    (driver.Consumer, "flow_active"),
    (driver.Consumer, "pause_partitions"),
    (driver.Consumer, "perform_seek"),
    (faust.App, "rebalancing"),
    (driver.Consumer, "resume_partitions"),
    (driver.AIOKafkaConsumerThread, "_create_worker_consumer"),  # engine.ConsumerThread
    (driver.AIOKafkaConsumerThread, "_highwaters"),
    (driver.AIOKafkaConsumerThread, "_ensure_consumer"),
    (driver.Producer, "_producer_type"),  # engine.Producer
    (driver.Producer, "_settings_extra"),
    (driver.Producer, "_ensure_producer"),  # streams/emit.py, through engine.plain_producer
    (driver.Producer, "_transaction_producers"),  # class attributes
    (driver.Producer, "_trn_locks"),
    (aiokafka.consumer.subscription_state.TopicPartitionState, "has_valid_position"),
    (aiokafka.consumer.subscription_state.TopicPartitionState, "position"),
    (aiokafka.producer.sender.Sender, "_find_coordinator"),
    # streams/emit.py: records join the batch a partition has queued (engine.queued_batch)
    (aiokafka.producer.message_accumulator.MessageBatch, "retry_count"),
    (aiokafka.producer.transaction_manager.TransactionManager, "is_in_transaction"),
    # streams/membership.py: a heartbeat asks whether the worker is still a member
    (aiokafka.consumer.group_coordinator.GroupCoordinator, "_do_heartbeat"),
    (faust.stores.rocksdb.Store, "_db_for_partition"),  # streams/tables.py, recovery.py
    (faust.stores.rocksdb.Store, "set_persisted_offset"),
    (faust.tables.base.Collection, "_new_changelog_topic"),
    (faust.tables.base.Collection, "_changelog_topic_name"),
    (faust.tables.recovery.Recovery, "_build_highwaters"),  # engine.Recovery
]

# (module, attribute): set on instances, so looked for as ``self.<attribute> =`` in the source
ATTRIBUTES = [
    (faust.transport.consumer, "_thread"),  # the consumer thread that drives aiokafka's
    (faust.transport.consumer, "_read_offset"),
    (faust.transport.consumer, "_acked"),
    (faust.transport.consumer, "_commit_fut"),
    (faust.transport.consumer, "_committed_offset"),
    (aiokafka.consumer.consumer, "_subscription"),
    (aiokafka.consumer.consumer, "_coordinator"),
    (aiokafka.consumer.consumer, "_fetch_max_wait_ms"),
    (aiokafka.consumer.consumer, "_isolation_level"),
    (aiokafka.consumer.subscription_state, "highwater"),
    (aiokafka.consumer.subscription_state, "lso"),
    (aiokafka.producer.producer, "_sender"),
    (aiokafka.producer.producer, "_message_accumulator"),
    (aiokafka.producer.producer, "_txn_manager"),
    (aiokafka.producer.message_accumulator, "_batches"),
    (aiokafka.producer.message_accumulator, "_exception"),
    (aiokafka.producer.message_accumulator, "_closed"),
    (aiokafka.producer.message_accumulator, "_builder"),
    (faust.stores.rocksdb, "_dbs"),
    (faust.tables.manager, "_recovery"),  # engine.TableManager
]
LIBRARIES = ("faust.", "aiokafka.", "mode.")
# what faust's documentation tells a custom codec to implement; and what ABCMeta sets
DOCUMENTED = {"_dumps", "_loads", "_abc_impl"}


@pytest.mark.parametrize(("package", "pinned"), PINNED.items())
def test_the_pinned_versions_are_installed(package: str, pinned: str) -> None:
    assert version(package) == pinned


@pytest.mark.parametrize(("where", "name"), METHODS,
                         ids=[f"{w.__name__}.{n}" for w, n in METHODS])
def test_a_private_method_the_worker_uses_is_there(where: type, name: str) -> None:
    assert hasattr(where, name), f"{where.__module__}.{where.__name__} has no {name}"


@pytest.mark.parametrize(("module", "name"), ATTRIBUTES,
                         ids=[f"{m.__name__}.{n}" for m, n in ATTRIBUTES])
def test_a_private_attribute_the_worker_uses_is_set(module: ModuleType, name: str) -> None:
    assert f"self.{name} =" in inspect.getsource(module), f"{module.__name__} sets no {name}"


def _worker_classes() -> list[type]:
    """The classes of the worker's modules (but the engine's) that extend a library class."""
    classes = []
    for info in pkgutil.walk_packages(streams.__path__, "streams."):
        if info.name == "streams.engine":
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # a tool's optional dependency: not part of the worker
            continue
        classes += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if cls.__module__ == info.name and _library_bases(cls)]
    return classes


def _library_bases(cls: type) -> list[type]:
    return [base for base in cls.__mro__[1:] if base.__module__.startswith(LIBRARIES)]


def _private_names(cls: type) -> set[str]:
    """Every private name the library classes ``cls`` extends define or set on themselves."""
    names: set[str] = set()
    for base in _library_bases(cls):
        names |= {name for name in vars(base) if name.startswith("_")}
        names |= set(re.findall(r"self\.(_\w+)", inspect.getsource(base)))
    return {name for name in names if not name.startswith("__")} - DOCUMENTED


WORKER_CLASSES = _worker_classes()


def test_the_worker_extends_library_classes_through_the_engine() -> None:
    extended = {base for cls in WORKER_CLASSES for base in cls.__bases__}
    assert {engine.Consumer, engine.ConsumerThread, engine.Producer, engine.Recovery,
            engine.TableManager} <= extended


@pytest.mark.parametrize("cls", WORKER_CLASSES, ids=[c.__qualname__ for c in WORKER_CLASSES])
def test_no_worker_class_but_the_engines_touches_a_private_part_of_a_library(
        cls: type) -> None:
    """Overridden or read elsewhere, a private part would escape the checks above."""
    private = _private_names(cls)
    own = {name for name in vars(cls) if name.startswith("_") and not name.startswith("__")}
    used = set(re.findall(r"(?:self|super\(\))\.(_\w+)", inspect.getsource(cls)))
    touched = sorted((own | used) & private)
    assert not touched, f"{cls.__module__}.{cls.__qualname__} touches {touched}"

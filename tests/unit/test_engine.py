"""The private parts of faust-streaming and aiokafka the worker reaches into, by name: those
``streams/engine.py`` reads or sets, and the private methods the subclasses in
``streams/transport.py`` and ``streams/recovery.py`` override.

They are pinned (pyproject.toml); an upgrade that renames or drops one fails here, naming it,
rather than somewhere in a worker at run time.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from types import ModuleType

import aiokafka.consumer.consumer
import aiokafka.consumer.group_coordinator
import aiokafka.consumer.subscription_state
import aiokafka.producer.producer
import aiokafka.producer.sender
import faust
import faust.stores.rocksdb
import faust.tables.base
import faust.tables.manager
import faust.tables.recovery
import faust.transport.consumer
import pytest
from faust.transport.drivers import aiokafka as driver

PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

# (where, name): methods and properties of a class, looked up on the class
METHODS = [
    (driver.Consumer, "_wait_next_records"),  # streams/transport.py: the fetch is routed
    (driver.Consumer, "_getmany"),  # a fetch asks for what a group waits for first
    (driver.Consumer, "_new_offset"),
    (driver.Consumer, "_filter_committable_offsets"),
    (driver.Consumer, "_filter_tps_with_pending_acks"),
    (driver.Consumer, "_commit_offsets"),
    (driver.Consumer, "_new_consumer_thread"),
    (driver.Consumer, "flow_active"),
    (driver.Consumer, "pause_partitions"),
    (driver.Consumer, "perform_seek"),
    (faust.App, "rebalancing"),
    (driver.Consumer, "resume_partitions"),
    (driver.AIOKafkaConsumerThread, "_create_worker_consumer"),
    (driver.AIOKafkaConsumerThread, "_highwaters"),
    (driver.AIOKafkaConsumerThread, "_ensure_consumer"),
    (driver.Producer, "_producer_type"),
    (driver.Producer, "_settings_extra"),
    (driver.Producer, "_ensure_producer"),  # streams/emit.py
    (driver.Producer, "_transaction_producers"),  # class attributes
    (driver.Producer, "_trn_locks"),
    (aiokafka.consumer.subscription_state.TopicPartitionState, "has_valid_position"),
    (aiokafka.consumer.subscription_state.TopicPartitionState, "position"),
    (aiokafka.producer.sender.Sender, "_find_coordinator"),
    # streams/membership.py: a heartbeat asks whether the worker is still a member
    (aiokafka.consumer.group_coordinator.GroupCoordinator, "_do_heartbeat"),
    (faust.stores.rocksdb.Store, "_db_for_partition"),  # streams/tables.py, recovery.py
    (faust.stores.rocksdb.Store, "set_persisted_offset"),
    (faust.tables.base.Collection, "_new_changelog_topic"),
    (faust.tables.base.Collection, "_changelog_topic_name"),
    (faust.tables.recovery.Recovery, "_build_highwaters"),
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
    (aiokafka.consumer.subscription_state, "highwater"),
    (aiokafka.consumer.subscription_state, "lso"),
    (aiokafka.producer.producer, "_sender"),
    (faust.stores.rocksdb, "_dbs"),
    (faust.tables.manager, "_recovery"),
]


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

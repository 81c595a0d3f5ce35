"""The contract's topics, their faust channels, and creating them on the broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from schemas.topics import (  # noqa: F401  (the names, for the worker's modules: t.CPL)
    ALERTS,
    COMMANDS,
    CORRECTIONS,
    CPL,
    DEADLETTER,
    DEVICE_INPUTS,
    INPUTS,
    INVENTORY,
    OUTPUTS,
    REJECTIONS,
    REQUESTS,
    RESPONSES,
)
from streams.errors import ConfigError, TopicsLost
from streams.settings import Settings
from streams.tables import changelog_topic

log = logging.getLogger(__name__)



def repartition_topic(settings: Settings) -> str:
    """The app's own topic of records forwarded to their device's partition
    (``streams/repartition.py``): named as its table's changelog is."""
    return f"{settings.topic_prefix}{settings.app_id}-repartition"


@dataclass(frozen=True)
class Topics:
    device_topic: faust.TopicT  # the three device-keyed inputs in their rank order, then
    # the repartition topic
    cpl_topic: faust.TopicT
    outputs: dict[str, faust.TopicT]  # by name in the contract
    name_of: dict[str, str]  # the broker's topic -> its name in the contract


def build(app: faust.App, settings: Settings) -> Topics:
    device_names = [settings.topic(n) for n in DEVICE_INPUTS] + [repartition_topic(settings)]
    outputs = {
        name: app.topic(settings.topic(name), key_serializer="text", value_serializer="smi")
        for name in OUTPUTS
    }
    return Topics(
        device_topic=app.topic(*device_names, key_serializer="raw", value_serializer="raw",
                               partitions=settings.partitions),
        cpl_topic=app.topic(settings.topic(CPL), key_serializer="raw", value_serializer="raw",
                            partitions=settings.partitions),
        outputs=outputs,
        name_of={settings.topic(n): n for n in (*INPUTS, *OUTPUTS)},
    )


async def ensure(settings: Settings) -> list[str]:
    """Create every topic of the contract, and the SMI table's changelog, that is missing;
    return the names it created.

    Existing topics must have ``settings.partitions`` partitions: the table's changelog is
    partitioned like the inputs, and a mismatch would put a device's state on another worker.
    The changelog is made here, compacted, rather than left to faust: a broker that creates
    topics on first use had made it before faust did, with the default policy (delete), so it
    grew with every write and was cut by retention.
    """
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        return await _ensure(admin, settings)
    finally:
        await admin.close()


async def refuse_lost_table(settings: Settings) -> None:
    """Before anything makes the table's changelog again: if it is gone, or empty (a broker
    that creates topics on first use makes it again when any client asks for it), while the
    group has committed input, a worker would start on an empty SMI and reject every request
    ``unknown-device``. Refuse, and say the way out."""
    changelog = changelog_topic(settings)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        present = changelog in set(await admin.list_topics())
        groups = {group[0] for group in await admin.list_consumer_groups()}
        if settings.app_id not in groups:  # a first start: nothing committed, nothing lost
            return
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    # a group's forwards count: its only input may have come through the repartition topic
    inputs = {settings.topic(n) for n in DEVICE_INPUTS} | {repartition_topic(settings)}
    used = {tp.partition for tp, meta in offsets.items()
            if tp.topic in inputs and meta.offset > 0}
    empty = sorted(await empty_partitions(settings, changelog, used)) if present else used
    if not empty:
        return
    where = "gone" if not present else (
        f"empty in partition{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))}")
    raise ConfigError(
        f"the SMI table's changelog {changelog} is {where}, but group {settings.app_id} has "
        "committed input there: a worker would start on an empty SMI. Rebuild the table "
        "from the input with `smi rebuild` (same settings, no worker running), or start "
        "afresh with a new SMI_APP_ID")


async def empty_partitions(settings: Settings, topic: str, partitions: Iterable[int]
                           ) -> set[int]:
    """Those of ``partitions`` that hold no record: never written, or every record deleted
    (delete-records, retention), which leaves the end offset where it was."""
    wanted = set(partitions)
    if not wanted:  # (a consumer stopped as soon as it started may raise CancelledError)
        return set()
    # a partition the topic lacks holds nothing (and asking its offsets would time out)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        count = (await _partition_counts(admin, [topic])).get(topic, 0)
    finally:
        await admin.close()
    present = wanted & set(range(count))
    if not present:
        return wanted
    consumer = AIOKafkaConsumer(**settings.kafka_client_options())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(present)]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return (wanted - present) | {tp.partition for tp in tps if ends[tp] <= starts[tp]}
    finally:
        await consumer.stop()


def wanted(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes."""
    return [settings.topic(n) for n in (*INPUTS, *OUTPUTS)] + [
        changelog_topic(settings), repartition_topic(settings)]


async def check_partitions(settings: Settings) -> None:
    """Raise unless each of the worker's topics that exists has ``SMI_PARTITIONS``: with
    another count, devices would be looked for on the wrong partitions."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        _refuse_other_counts(await _partition_counts(admin, wanted(settings)), settings)
    finally:
        await admin.close()


def _refuse_other_counts(existing: dict[str, int], settings: Settings) -> None:
    for name, count in existing.items():
        if count != settings.partitions:
            raise ConfigError(
                f"topic {name} has {count} partitions but SMI_PARTITIONS is "
                f"{settings.partitions}: use a new SMI_TOPIC_PREFIX or set SMI_PARTITIONS={count}"
            )


async def _ensure(admin: AIOKafkaAdminClient, settings: Settings) -> list[str]:
    changelog = changelog_topic(settings)
    wanted_ = wanted(settings)
    existing = await _partition_counts(admin, wanted_)
    _refuse_other_counts(existing, settings)
    missing = [n for n in wanted_ if n not in existing]
    config = {"min.insync.replicas": str(settings.min_insync_replicas)}
    own = {changelog: COMPACTED, repartition_topic(settings): WRITE_TIMES}
    new = [
        NewTopic(n, settings.partitions, settings.replication_factor,
                 topic_configs={**config, **own.get(n, {})})
        for n in missing
    ]
    if new:
        await _create(admin, new)
        log.info("created topics: %s", ", ".join(missing))
    if changelog in existing:
        await _keep_compacted(admin, changelog, config)
    return missing


async def _create(admin: AIOKafkaAdminClient, new: list[NewTopic]) -> None:
    """Create ``new``, or raise with the broker's reason for each topic it refused (one that
    another worker created first is no error)."""
    with contextlib.suppress(TopicAlreadyExistsError):
        response = await admin.create_topics(new)
        refused = [f"{name}: {message or for_code(code).__name__}"
                   for name, code, message, *_ in response.topic_errors
                   if code not in (0, TopicAlreadyExistsError.errno)]
        if refused:
            raise ConfigError("the broker refused to create " + "; ".join(refused))


COMPACTED = {"cleanup.policy": "compact"}
# A forward's original time rides in its header (streams/repartition.py); its record's
# is the time it was written, so that retention counts from then: a backlog a week old would
# otherwise be past retention as soon as its segment rolled, before a lagging group read it,
# and a broker limit on old timestamps would refuse it.
WRITE_TIMES = {"message.timestamp.type": "LogAppendTime"}
DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs: a setting made on the topic itself


async def _keep_compacted(admin: AIOKafkaAdminClient, topic: str, config: dict[str, str]) -> None:
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = described[0].resources[0][4]  # (name, value, read_only, source, ...)
    policy = next((e[1] for e in entries if e[0] == "cleanup.policy"), None)
    if policy != "compact":
        log.warning("topic %s had cleanup.policy=%s: set to compact (the SMI lives in it)",
                    topic, policy)
        # AlterConfigs replaces the topic's own settings: keep those it has (source 1)
        own = {e[0]: e[1] for e in entries if e[3] == DYNAMIC_TOPIC_CONFIG}
        answers = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                            {**config, **own, **COMPACTED})])
        for code, message, *_ in (r for answer in answers for r in answer.resources):
            if code:  # e.g. no AlterConfigs right on the topic: the table would be cut
                raise ConfigError(f"topic {topic} cannot be set to cleanup.policy=compact: "
                                  f"{for_code(code).__name__} {message or ''}".rstrip())


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    listed = set(await admin.list_topics())
    present = [n for n in names if n in listed]
    if not present:
        return {}
    described = await admin.describe_topics(present)
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}


class Watch:
    """Stops the worker once the broker answers without its topics twice in a row: a cluster
    lost and rebuilt empty, where faust would log every topic as missing, many times a
    second, for as long as it ran. A broker that does not answer is left to the delivery
    timeout."""

    SECONDS = 10.0
    STOP_SECONDS = 15.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen_missing: list[str] = []

    async def check(self) -> None:
        try:
            missing = await asyncio.wait_for(self._missing(), self.SECONDS * 0.8)
        except Exception as exc:  # the broker is away, not empty: not this check's business
            log.debug("topic check skipped: %r", exc)
            return
        if missing and missing == self.seen_missing:
            # faust's orderly stop would wait for outputs to topics that are gone, up to the
            # delivery timeout: there is nothing left to commit them to, so stop soon anyway
            asyncio.get_running_loop().call_later(self.STOP_SECONDS, _exit_now)
            raise TopicsLost(
                f"the broker at {self.settings.broker} no longer has {', '.join(missing)} (a "
                "lost or rebuilt cluster?): the worker stops. Restore the cluster's topics, "
                "or start again on new ones (a new SMI_TOPIC_PREFIX and SMI_APP_ID)")
        if missing:
            log.warning("the broker has no %s: checking again in %.0f s",
                        ", ".join(missing), self.SECONDS)
        self.seen_missing = missing

    async def _missing(self) -> list[str]:
        # a client of its own each time: one made before the cluster was lost may still
        # hold its old connections and metadata
        admin = AIOKafkaAdminClient(**self.settings.kafka_client_options())
        try:
            await admin.start()  # inside: a check cut short by its time limit closes it too
            present = set(await admin.list_topics())
        finally:
            await admin.close()
        return [name for name in wanted(self.settings) if name not in present]


def _exit_now() -> None:
    log.critical("the worker did not stop within %.0f s of losing its topics: exiting",
                 Watch.STOP_SECONDS)
    os._exit(1)

"""A rebuild that stops part way is never taken for a table (``streams/tools/rebuild.py``):
its mark stays until the broker has every record of the partition, and a worker refuses a
partition whose mark is there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from streams.core.policy import Policy
from streams.errors import TablePartial
from streams.order import GroupState
from streams.settings import Settings
from streams.tables import group_key, rebuilding_key, unfinished_rebuilds
from streams.tools import rebuild, replay
from tests.unit.test_app import build
from tests.unit.test_recent import device


class _Producer:
    """Takes every record but those keyed ``refuse``, which the broker refuses."""

    def __init__(self, refuse: bytes | None = None) -> None:
        self.refuse = refuse
        self.taken: list[tuple[int, bytes, bytes | None]] = []

    async def send(self, topic: str, value: bytes | None, key: bytes, partition: int
                   ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key == self.refuse:
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.taken.append((partition, key, value))
            future.set_result(None)
        return future


def _outcome() -> replay.Outcome:
    outcome = replay.Outcome(Policy())
    outcome.smi = {d.device_id: d for d in (device(1), device(2), device(3))}
    return outcome


async def test_the_mark_is_deleted_only_after_every_record_is_taken(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=2)
    producer = _Producer()
    await rebuild._write(producer, settings, 1, _outcome(), GroupState([0, 0]))  # type: ignore[arg-type]
    assert [key for _, key, _ in producer.taken][-2:] == [
        group_key(1).encode(), rebuilding_key(1).encode()]
    assert producer.taken[-1][2] is None  # the mark deleted, last


async def test_a_record_refused_leaves_the_mark(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=2)
    producer = _Producer(refuse=device(2).device_id.encode())
    with pytest.raises(MessageSizeTooLargeError):
        await rebuild._write(producer, settings, 1, _outcome(), GroupState([0, 0]))  # type: ignore[arg-type]
    keys = [key for _, key, _ in producer.taken]
    assert device(3).device_id.encode() in keys  # the others went: the partition is partial
    assert rebuilding_key(1).encode() not in keys


def test_a_worker_refuses_a_partition_whose_mark_is_there(tmp_path: Path) -> None:
    processor = build(tmp_path, partitions=2).smi.processor
    backend: Any = processor.records.backend
    state = GroupState([0, 0]).to_dict(1)
    backend.put(1, group_key(1), state, orjson.dumps(state))
    assert processor.group_state(1) is not None
    mark = {"partition": 1}
    backend.put(1, rebuilding_key(1), mark, orjson.dumps(mark))
    with pytest.raises(TablePartial, match="partition 1 of the SMI table"):
        processor.group_state(1)
    assert processor.group_state(0) is None  # another partition's group starts new


def test_a_mark_counts_only_while_its_last_value_is_live() -> None:
    latest = {rebuilding_key(2): {"partition": 2}, rebuilding_key(5): None,
              group_key(3): {"partition": 3}, "0123456789ABCDEF": {"status": "Suspended"}}
    assert unfinished_rebuilds(latest) == frozenset({2})

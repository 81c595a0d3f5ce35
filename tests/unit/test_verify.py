"""``smi verify`` says when it cannot know: a table that cannot say what its group decided
is not a table with no difference (``streams/tools/verify.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import TopicPartition

from streams.errors import ConfigError
from streams.order import GroupState
from streams.settings import Settings
from streams.tools.verify import Snapshot, refuse_unknowable


def snapshot(groups: dict[int, GroupState], committed: dict[TopicPartition, int]) -> Snapshot:
    return Snapshot({}, groups, committed, settled=True)


def test_a_partition_with_committed_input_and_no_group_state_cannot_be_verified(
        tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=2)
    committed = {TopicPartition("smi.inventory", 0): 5, TopicPartition("smi.inventory", 1): 3}
    with pytest.raises(ConfigError, match=r"partitions 1 had got to.*lost or partial"):
        refuse_unknowable(snapshot({0: GroupState([0, 0])}, committed), settings)
    refuse_unknowable(snapshot({0: GroupState([0, 0]), 1: GroupState([0, 0])}, committed),
                      settings)
    # offsets that moved while the table was read: a group's first commit may have come
    # after the table was read (verify says the offsets moved; the partition shows as
    # different, not as lost)
    refuse_unknowable(Snapshot({}, {0: GroupState([0, 0])}, committed, settled=False), settings)
    # a partition that committed nothing needs no state
    refuse_unknowable(snapshot({0: GroupState([0, 0])}, {**committed,
                      TopicPartition("smi.inventory", 1): 0}), settings)


def test_a_group_that_committed_nothing_cannot_be_verified(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=2)
    with pytest.raises(ConfigError, match="group unit has committed no input"):
        refuse_unknowable(snapshot({}, {}), settings)


def test_a_table_a_stopped_rebuild_left_cannot_be_verified(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="unit", partitions=2)
    groups = {0: GroupState([0, 0]), 1: GroupState([0, 0])}
    committed = {TopicPartition("smi.inventory", 0): 5}
    with pytest.raises(ConfigError, match=r"partitions 1 of the table .* did not finish"):
        refuse_unknowable(Snapshot({}, groups, committed, True, frozenset({1})), settings)


def test_a_difference_shows_its_values_as_json() -> None:
    from streams.tools.verify import Difference

    found = Difference("X", {"status": "Withdrawn", "gpf_id": None, "pending": []},
                       {"status": "Commissioned", "gpf_id": None, "pending": [["a", "11.2"]]})
    assert found.fields() == ['pending: table [], replay [["a", "11.2"]]',
                              'status: table "Withdrawn", replay "Commissioned"']
    assert Difference("Y", None, {"status": "Suspended"}).fields() == [
        'status: table null, replay "Suspended"']

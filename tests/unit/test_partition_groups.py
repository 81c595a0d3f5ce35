"""A partition group decides its topics' records and the CPL's changes in timestamp order,
whatever order the fetcher read them in (``streams/order.py``)."""

from __future__ import annotations

import heapq
import random
from functools import partial
from typing import Any, NamedTuple

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams import repartition
from streams import topics as t
from streams.order import (
    FORWARDED,
    WATERMARK_EVERY,
    CplItem,
    CplTimeline,
    GroupState,
    Key,
    Ordering,
    PartitionGroup,
)
from streams.repartition import IDLE, UNKNOWN, Forwarded, Watermark
from streams.tools import replay
from tests.unit.incoming import Message

TOPICS = ("inv", "req", "resp")  # ranks 1, 2, 3; the CPL's is 0
GROUPS = 4  # partitions of each topic


class Rec(NamedTuple):
    timestamp: int
    offset: int


class Entry(NamedTuple):
    key: str
    status: str

    def model_dump(self, mode: str) -> dict[str, Any]:
        return {"status": self.status}


def caught_up(*topics: str) -> Any:
    return lambda topic: topic in topics


def timeline(partitions: int = 2, caught: bool = True) -> CplTimeline:
    line = CplTimeline(partitions)
    for partition in range(partitions):
        line.set_caught_up(partition, caught)
    return line


def state(applied: list[int] | None = None) -> GroupState:
    """A group's state in which no other group has anything to forward to it."""
    return GroupState(applied or [0, 0], {(q, rank): IDLE for q in range(GROUPS)
                                          for rank in range(1, len(TOPICS) + 1)})


def quiet(partition: int) -> GroupState:
    return state()


def group(line: CplTimeline | None = None, applied: list[int] | None = None
          ) -> PartitionGroup:
    return PartitionGroup(3, TOPICS, "cpl", line or timeline(), state(applied), GROUPS)


def keys(steps: list[Any]) -> list[Key]:
    return [s.key for s in steps]


def test_records_come_out_by_timestamp_then_topic_rank_then_offset() -> None:
    g = group()
    g.add("resp", [Rec(10, 0), Rec(30, 1)])
    g.add("req", [Rec(10, 0), Rec(20, 1)])
    g.add("inv", [Rec(20, 0)])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [(s.topic, s.item.record.timestamp) for s in steps] == [
        ("req", 10), ("resp", 10), ("inv", 20), ("req", 20), ("resp", 30)]


def test_a_partition_keeps_its_own_order_when_its_timestamps_go_back() -> None:
    g = group()
    g.add("req", [Rec(50, 0), Rec(5, 1)])  # a producer's clock went back
    g.add("resp", [Rec(20, 0)])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [(s.topic, s.item.record.offset) for s in steps] == [("resp", 0), ("req", 0), ("req", 1)]


def test_it_holds_back_for_a_partition_not_caught_up_until_the_idle_time() -> None:
    g = group()
    g.add("resp", [Rec(10, 0)])
    lagging = caught_up("inv", "resp")  # req has records on the broker, none fetched
    assert g.take(lagging, now=100.0, idle=5, limit=100) == []
    assert g.take(lagging, now=104.9, idle=5, limit=100) == []
    g.add("req", [Rec(5, 0)])  # fetched in time: it goes first
    steps = g.take(caught_up(*TOPICS), now=105.0, idle=5, limit=100)
    assert [s.topic for s in steps] == ["req", "resp"]
    g.add("resp", [Rec(20, 1)])
    assert g.take(lagging, now=200.0, idle=5, limit=100) == []  # a new wait
    assert [s.topic for s in g.take(lagging, now=205.0, idle=5, limit=100)] == ["resp"]


def test_a_wait_that_ran_out_does_not_let_a_later_one_go_at_once() -> None:
    """Once the group has had nothing to wait for, a new wait gets its whole idle time (and
    its warning), however long ago the last one ran out."""
    g = group()
    g.add("resp", [Rec(10, 0)])
    lagging = caught_up("inv", "resp")
    assert g.take(lagging, now=100.0, idle=5, limit=100) == []
    assert len(g.take(lagging, now=105.0, idle=5, limit=100)) == 1  # ran out: it goes
    assert g.take(caught_up(*TOPICS), now=106.0, idle=5, limit=100) == []  # all caught up
    g.add("inv", [Rec(500, 0)])
    assert g.take(lagging, now=300.0, idle=5, limit=100) == []  # req lags again: a new wait
    g.add("req", [Rec(400, 0)])
    steps = g.take(caught_up(*TOPICS), now=300.1, idle=5, limit=100)
    assert [s.topic for s in steps] == ["req", "inv"]


def test_a_commit_stops_at_the_first_record_still_held_back() -> None:
    # what is buffered but not decided must be read again after a crash
    g = group()
    g.add("req", [Rec(10, 0), Rec(20, 1)])
    assert g.take(caught_up("req", "resp"), now=0, idle=5, limit=100) == []  # inv lagging
    assert g.committable("req") == 0
    g.add("inv", [Rec(15, 0)])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=2)
    assert [(s.topic, s.item.record.offset) for s in steps] == [("req", 0), ("inv", 0)]
    assert g.committable("req") == 1 and g.committable("inv") == 1


def test_it_never_waits_for_a_partition_that_is_caught_up() -> None:
    g = group()
    g.add("inv", [Rec(99, 0)])
    assert len(g.take(caught_up(*TOPICS), now=0, idle=300, limit=100)) == 1


def test_cpl_changes_take_part_at_their_timestamps() -> None:
    line = timeline()
    line.add(1, CplItem((15, 0, 1, 0), Entry("fw-a", "Removed")))
    line.add(0, CplItem((10, 0, 0, 7), Entry("fw-a", "Active")))
    line.add(0, CplItem((20, 0, 0, 8), Entry("fw-b", "Active")))
    g = group(line)
    g.add("req", [Rec(10, 0), Rec(16, 1), Rec(25, 2)])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [(s.topic, s.key[0]) for s in steps] == [
        ("cpl", 10), ("req", 10), ("cpl", 15), ("req", 16), ("cpl", 20), ("req", 25)]
    seen = []  # the CPL each record is decided against, as the steps are decided in order
    for step in steps:
        if step.topic == "cpl":
            g.apply_cpl(step)
        else:
            seen.append(dict(g.cpl))
    assert seen == [{"fw-a": {"status": "Active"}}, {"fw-a": {"status": "Removed"}},
                    {"fw-a": {"status": "Removed"}, "fw-b": {"status": "Active"}}]


def test_cpl_changes_applied_before_a_restart_come_first_as_state_only() -> None:
    line = timeline()
    line.add(0, CplItem((10, 0, 0, 0), Entry("fw-a", "Removed")))
    line.add(0, CplItem((30, 0, 0, 1), Entry("fw-b", "Removed")))
    line.add(1, CplItem((5, 0, 1, 0), Entry("fw-c", "Removed")))  # read late, never applied
    g = group(line, applied=[2, 0])  # partition 0 applied to its end, partition 1 not
    g.add("req", [Rec(25, 5)])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [(s.key, s.known) for s in steps] == [
        ((10, 0, 0, 0), True), ((30, 0, 0, 1), True),  # the CPL as it was, before anything
        ((5, 0, 1, 0), False),  # still applied, late
        ((25, 2, 3, 5), False)]
    assert g.applied == [2, 1]


def test_an_invalid_cpl_message_holds_its_place_and_changes_nothing() -> None:
    """As in replay's merge, whose heads are per partition: the removal behind it waits."""
    line = timeline()
    line.add(0, CplItem((10, 0, 0, 0), None))
    line.add(0, CplItem((1, 0, 0, 1), Entry("fw-a", "Removed")))
    g = group(line)
    g.add("inv", [Rec(5, 0)])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [s.key[:2] for s in steps] == [(5, 1), (10, 0), (1, 0)]
    for step in steps[1:]:
        g.apply_cpl(step)
    assert g.cpl == {"fw-a": {"status": "Removed"}}


def test_it_waits_for_a_cpl_partition_the_reader_has_not_read_to_its_end() -> None:
    line = timeline(caught=False)
    g = group(line)
    g.add("req", [Rec(10, 0)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    line.add(0, CplItem((5, 0, 0, 0), Entry("fw-a", "Active")))
    line.set_caught_up(0, True)
    line.set_caught_up(1, True)
    assert [s.topic for s in g.take(caught_up(*TOPICS), now=1, idle=5, limit=100)] == [
        "cpl", "req"]


def delivered(left: dict[str, list[Rec]], topic: str, partition: int) -> bool:
    return not left[topic]


def test_any_fetch_order_gives_the_order_of_a_merge_by_key() -> None:
    """Each topic's records arrive in fetches of random sizes, the topics in random turns;
    a topic not fully delivered counts as not caught up (it has records on the broker)."""
    rng = random.Random(17)
    streams = {topic: [Rec(rng.randrange(0, 500, 5), offset) for offset in range(60)]
               for topic in TOPICS}
    for stream in streams.values():
        stream.sort()  # mostly rising, with ties across topics
    line = CplTimeline(2)
    cpl = [CplItem((ts, 0, 0, i), Entry(f"fw-{i}", "Active"))
           for i, ts in enumerate(range(0, 500, 45))]
    expected = list(heapq.merge(
        *[[((r.timestamp, rank, 3, r.offset), topic) for r in streams[topic]]
          for rank, topic in enumerate(TOPICS, 1)],
        [(item.key, "cpl") for item in cpl]))
    for seed in range(20):
        rng = random.Random(seed)
        ordering = Ordering(TOPICS, "cpl", line, 5.0, quiet, 1 << 30, partitions=GROUPS)
        line.__post_init__()
        left = {topic: list(stream) for topic, stream in streams.items()}
        cpl_left = list(cpl)
        out: list[tuple[Key, str]] = []
        while any(left.values()) or cpl_left:
            if cpl_left and rng.random() < 0.3:
                line.add(0, cpl_left.pop(0))
            topic = rng.choice(TOPICS)
            count = rng.randrange(0, 7)
            ordering.add(topic, 3, left[topic][:count])
            del left[topic][:count]
            for partition in range(2):
                line.set_caught_up(partition, not cpl_left)
            steps = ordering.take([3], partial(delivered, left), 0.0, 100)
            out += [(s.key, s.topic) for _, batch in steps for s in batch]
        final = ordering.take([3], lambda topic, partition: True, 0.0, 1000)
        out += [(s.key, s.topic) for _, batch in final for s in batch]
        assert out == expected, f"seed {seed}"


def test_a_full_buffer_is_paused_and_resumed_at_half() -> None:
    ordering = Ordering(TOPICS, "cpl", timeline(), 5.0, quiet, 4, partitions=GROUPS)
    ordering.add("req", 0, [Rec(i, i) for i in range(5)])
    assert ordering.full_and_drained() == ([("req", 0)], [])
    assert ordering.full_and_drained() == ([], [])
    ordering.group(0).add("inv", [Rec(100, 0)])
    ordering.take([0], lambda topic, partition: True, 0.0, 3)  # 3 of the 5 requests
    assert ordering.full_and_drained() == ([], [("req", 0)])


def test_a_new_group_starts_where_the_table_says() -> None:
    asked: list[int] = []

    def restore(partition: int) -> GroupState | None:
        asked.append(partition)
        return state([partition, 0])

    ordering = Ordering(TOPICS, "cpl", timeline(), 5.0, restore, 100, partitions=GROUPS)
    assert ordering.group(2).restored == [2, 0] and ordering.group(2).applied == [2, 0]
    ordering.clear()  # a rebalance: asked again
    ordering.group(2)
    assert asked == [2, 2]


def test_what_the_longest_waiting_group_waits_for_is_fetched_first() -> None:
    ordering = Ordering(TOPICS, "cpl", timeline(), 5.0, quiet, 100, partitions=GROUPS)
    ordering.add("req", 0, [Rec(1, 0)])
    ordering.add("req", 1, [Rec(1, 0)])

    def lagging(topic: str, partition: int) -> bool:  # "resp" has records on the broker
        return topic != "resp"

    assert ordering.starved() is None
    ordering.take([1], lagging, now=10.0, limit=100)
    ordering.take([0], lagging, now=11.0, limit=100)
    assert ordering.starved() == ("resp", 1)
    ordering.group(1).add("resp", [Rec(2, 0)])
    ordering.take([0, 1], lagging, now=12.0, limit=100)
    assert ordering.starved() == ("resp", 0)


# One home per device (streams/repartition.py): records of other groups' devices leave as
# they are fetched; forwarded ones are merged by their original key once no group can still
# forward an older one.

class Keyed(NamedTuple):
    timestamp: int
    offset: int
    home: int


def homed(topic: str, record: Any) -> tuple[Any, int]:
    return None, getattr(record, "home", 3)


def forwarded(ts: int, source: int, rank: int, offset: int, at: int) -> Forwarded:
    return Forwarded(TOPICS[rank - 1], source, offset, ts, b"k", b"{}", rank, at)


def waiting_group(marks: dict[tuple[int, int], Key] | None = None) -> PartitionGroup:
    """Group 3 of 4, whose sources have said nothing yet unless ``marks`` says."""
    return PartitionGroup(3, TOPICS, "cpl", timeline(), GroupState([0, 0], marks or {}),
                          GROUPS, homed)


def test_a_record_of_another_groups_device_leaves_as_it_is_fetched() -> None:
    g = waiting_group(quiet(3).watermarks)
    g.add("req", [Keyed(10, 0, 3), Keyed(11, 1, 1), Keyed(12, 2, 3)])
    assert [item.record.offset for item in g.take_outbox()] == [1] and not g.outbox
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [s.item.record.offset for s in steps] == [0, 2]
    assert g.committable("req") == 3  # past the forwarded one too


def test_forwards_are_merged_by_their_original_key_once_no_group_can_send_an_older_one() -> None:
    marks = dict(quiet(3).watermarks)
    marks[(0, 2)] = UNKNOWN  # group 0 has said nothing about its requests
    g = waiting_group(marks)
    g.add("resp", [Keyed(20, 0, 3)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []  # group 0 may send older
    g.add_repartition([forwarded(15, 0, 2, 7, at=0),
                       Watermark(0, [IDLE, (30, 2, 0, 9), IDLE], at=1)], [0, 1])
    steps = g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert [(s.key, s.topic) for s in steps] == [((15, 2, 0, 7), FORWARDED),
                                                  ((20, 3, 3, 0), "resp")]
    assert g.repartition_committable() == 2 and g.state.forwarded == {(0, 2): 7}


def test_a_watermark_alone_lets_a_held_back_record_go() -> None:
    marks = dict(quiet(3).watermarks)
    marks[(0, 2)] = UNKNOWN
    g = waiting_group(marks)
    g.add("resp", [Keyed(20, 0, 3)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    g.add_repartition([Watermark(0, [IDLE, (30, 2, 0, 9), IDLE], at=0)], [0])
    assert keys(g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)) == [(20, 3, 3, 0)]


def test_idle_said_before_a_restart_or_a_rebalance_is_said_again_before_it_counts() -> None:
    """Idle, kept in the table or read back from the topic, was said of the input as it was
    then: after an outage the group that said it may have records to forward here, older
    than this group's own. Only idle said in this generation lets the group go on."""
    saved = GroupState.from_dict(state().to_dict(3))  # every other group said idle
    g = PartitionGroup(3, TOPICS, "cpl", timeline(), saved, GROUPS, homed, generation=7)
    g.add("resp", [Keyed(150, 0, 3)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    for q in (0, 1, 2):
        g.add_repartition([Watermark(q, [IDLE, IDLE, IDLE], at=q, generation=6)], [q])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []  # read back: old
    g.add_repartition([forwarded(100, 0, 2, 5, at=3)], [3])  # what group 0 had fetched
    for q in (0, 1, 2):
        g.add_repartition([Watermark(q, [IDLE, IDLE, IDLE], at=4 + q, generation=7)], [4 + q])
    assert [s.topic for s in g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)] == [
        FORWARDED, "resp"]


def test_a_watermark_says_the_generation_it_was_said_in() -> None:
    value, headers = repartition.watermark_message(2, [IDLE, (30, 2, 2, 9), IDLE], 7)
    said = repartition.read(Message("rep", 3, 9, None, value, 15, tuple(headers)), TOPICS)
    assert said == Watermark(2, [IDLE, (30, 2, 2, 9), IDLE], 9, 7)
    earlier = Message("rep", 3, 10, None, value, 15, (headers[0],))
    assert repartition.read(earlier, TOPICS) == Watermark(2, [IDLE, (30, 2, 2, 9), IDLE],
                                                          10, -1)  # an earlier release's
    # and the headers an earlier release reads are as it wrote them: a rolling upgrade
    # does not stop it
    assert dict(headers)[repartition.WATERMARK] == b"2"
    assert dict(repartition.origin_headers(2, 0, 7, 12))[repartition.ORIGIN] == b"2 0 7"


def test_a_forward_alone_goes_before_later_records_and_its_source_is_waited_for_again(
) -> None:
    """A source's forwards come in its order: the first one to come is the lowest it has
    left, watermark or not. Once it is decided, the source may still forward anything."""
    marks = dict(quiet(3).watermarks)
    marks[(0, 2)] = UNKNOWN
    g = waiting_group(marks)
    g.add("resp", [Keyed(20, 0, 3)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    g.add_repartition([forwarded(15, 0, 2, 7, at=0)], [0])
    assert keys(g.take(caught_up(*TOPICS), now=1, idle=5, limit=100)) == [(15, 2, 0, 7)]
    assert g.take(caught_up(*TOPICS), now=2, idle=5, limit=100) == []


def test_the_repartition_commit_stops_at_the_first_forward_of_any_source_not_decided() -> None:
    """Forwards are decided in key order, not in the order they were written: the offset to
    commit is the lowest of those still buffered, whichever source sent it."""
    marks = dict(quiet(3).watermarks)
    marks[(2, 1)] = UNKNOWN  # group 2 may still forward inventory
    g = waiting_group(marks)
    g.add_repartition([forwarded(10, 0, 2, 7, at=0),
                       Watermark(2, [(11, 1, 2, 0), IDLE, IDLE], at=1)], [0, 1])
    assert keys(g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)) == [(10, 2, 0, 7)]
    g.add_repartition([forwarded(15, 1, 3, 4, at=2), forwarded(12, 0, 2, 8, at=3)], [2, 3])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    assert g.repartition_committable() == 2
    g.add_repartition([Watermark(2, [(13, 1, 2, 0), IDLE, IDLE], at=4)], [4])
    assert keys(g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)) == [(12, 2, 0, 8)]
    assert g.repartition_committable() == 2  # source 1's forward at 2 is still held back


def test_a_wait_for_another_groups_forwards_runs_out_like_any_other() -> None:
    g = waiting_group()  # no watermark from anyone: a group whose worker is gone
    g.add("resp", [Keyed(20, 0, 3)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    assert len(g.take(caught_up(*TOPICS), now=6, idle=5, limit=100)) == 1


def test_a_repartition_record_this_version_cannot_read_is_skipped() -> None:
    """A newer version's topic rank, or a record of neither kind, must not stop the worker."""
    def record(headers: tuple[tuple[str, bytes], ...]) -> Message:
        return Message("rep", 3, 9, b"k", b"{}", 15, headers)

    origin = repartition.ORIGIN
    assert repartition.read(record(((origin, b"2 0 7"),)), TOPICS) == Forwarded(
        "req", 0, 7, 15, b"k", b"{}", 2, 9)  # an earlier release's: no timestamp
    for rank in (b"0", b"4"):
        assert repartition.read(record(((origin, rank + b" 0 7"),)), TOPICS) is None
    assert repartition.read(record(()), TOPICS) is None


def test_a_forward_is_merged_at_its_original_timestamp_whatever_the_topic_stamps() -> None:
    """A broker or topic set to LogAppendTime stamps a forward with the time it was written;
    the original's timestamp rides in its header, so it still sorts where replay puts it."""
    headers = tuple(repartition.origin_headers(2, 0, 7, 12))
    restamped = Message("rep", 3, 9, b"k", b"{}", 9_999, headers)
    forward = repartition.read(restamped, TOPICS)
    assert isinstance(forward, Forwarded) and forward.timestamp == 12


def test_a_second_copy_of_a_forward_is_dropped() -> None:
    g = waiting_group(quiet(3).watermarks)
    g.add_repartition([forwarded(15, 0, 2, 7, at=0), forwarded(15, 0, 2, 7, at=1)], [0, 1])
    assert len(g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)) == 1
    again = PartitionGroup(3, TOPICS, "cpl", timeline(), g.state, GROUPS, homed)  # a restart
    again.add_repartition([forwarded(15, 0, 2, 7, at=0)], [0])
    assert again.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []


def test_a_watermark_is_kept_only_once_the_forwards_before_it_are_decided() -> None:
    """Kept with an earlier forward still to decide, a restart would read the watermark back
    from the table before that forward from the topic, and decide past it."""
    marks = dict(quiet(3).watermarks)
    marks[(0, 2)] = UNKNOWN
    g = waiting_group(marks)
    g.add_repartition([forwarded(15, 0, 2, 7, at=0),
                       Watermark(0, [IDLE, IDLE, IDLE], at=1)], [0, 1])
    g.settle()
    assert g.state.watermarks[(0, 2)] == UNKNOWN  # offset 0 is committed: read again first
    g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    g.settle()
    assert g.state.watermarks[(0, 2)] == IDLE


def test_a_groups_watermarks_are_how_far_it_fetched_or_idle() -> None:
    g = waiting_group(quiet(3).watermarks)
    g.add("req", [Keyed(10, 0, 3), Keyed(11, 1, 1)])
    lagging = caught_up("inv", "resp")
    assert g.take(lagging, now=0, idle=5, limit=100) and g.outgoing == [
        IDLE, (11, 2, 3, 1), IDLE]
    g.take(lagging, now=0.01, idle=5, limit=100)
    assert g.outgoing is None  # unchanged
    g.take(caught_up(*TOPICS), now=0.02, idle=5, limit=100)
    assert g.outgoing == [IDLE, IDLE, IDLE]  # read to the end: said at once


def test_a_group_says_how_far_it_fetched_one_topic_before_it_has_fetched_another() -> None:
    """Other groups wait for each of its topics apart: its requests' watermark lets them go
    on while nothing is known yet of its inventory."""
    g = waiting_group(quiet(3).watermarks)
    g.add("req", [Keyed(10, 0, 3)])
    g.take(caught_up("resp"), now=0, idle=5, limit=100)
    assert g.outgoing == [UNKNOWN, (10, 2, 3, 0), IDLE]


def test_a_watermark_that_only_moved_on_waits_its_turn_and_one_that_went_down_does_not(
) -> None:
    """Every group reads every other's watermarks: one per fetch would be most of what the
    repartition topic carries. One that went down (a partition idle before has records
    again) must reach the others before they decide past it."""
    g = waiting_group(quiet(3).watermarks)
    behind = caught_up("inv", "resp")  # req has more on the broker
    g.add("req", [Keyed(10, 0, 3)])
    g.take(behind, now=0, idle=5, limit=100)
    assert g.outgoing == [IDLE, (10, 2, 3, 0), IDLE]
    g.add("req", [Keyed(11, 1, 3)])
    g.take(behind, now=0.01, idle=5, limit=100)
    assert g.outgoing is None  # moved on, within WATERMARK_EVERY of the last
    g.take(behind, now=0.01 + WATERMARK_EVERY, idle=5, limit=100)
    assert g.outgoing == [IDLE, (11, 2, 3, 1), IDLE]
    g.add("inv", [Keyed(12, 0, 3)])
    g.take(caught_up("resp"), now=0.02 + WATERMARK_EVERY, idle=5, limit=100)
    assert g.outgoing == [(12, 1, 3, 0), (11, 2, 3, 1), IDLE]  # inv went down from idle


def test_a_partition_read_to_its_end_stays_idle_until_its_next_records_are_handed_over(
) -> None:
    """Live: the broker has a new record of a quiet partition the consumer has not handed
    over yet. Its last key, seconds old, would hold every other group back."""
    g = waiting_group(quiet(3).watermarks)
    g.add("inv", [Keyed(10, 0, 3)])
    g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)
    assert g.outgoing == [IDLE, IDLE, IDLE]
    g.take(caught_up("req", "resp"), now=1, idle=5, limit=100)  # inv has more on the broker
    assert g.outgoing is None
    g.add("inv", [Keyed(900, 1, 3)])  # handed over, and more behind it
    g.take(caught_up("req", "resp"), now=2, idle=5, limit=100)
    assert g.outgoing == [(900, 1, 3, 1), IDLE, IDLE]


def test_what_was_saved_of_a_groups_state_stays_as_it_was() -> None:
    """The worker writes a group's state only when it differs from what it saved last: a
    saved copy that moved on with the group would hide every later CPL step."""
    line = timeline()
    line.add(0, CplItem((5, 0, 0, 0), Entry("fw", "Removed")))
    g = group(line)
    saved = g.state.to_dict(g.partition)
    assert len(g.take(caught_up(*TOPICS), now=0, idle=5, limit=100)) == 1
    assert g.state.to_dict(g.partition) != saved and saved["cpl"] == [0, 0]


def test_a_group_held_back_by_another_groups_watermark_asks_for_its_partition() -> None:
    """The other group moves its watermark on only when its partition is fetched: the
    consumer fetches what the group waiting longest waits for first."""
    marks = dict(quiet(3).watermarks)
    marks[(1, 2)] = (5, 2, 1, 0)  # group 1 has fetched its requests up to timestamp 5
    g = waiting_group(marks)
    g.add("resp", [Keyed(20, 0, 3)])
    assert g.take(caught_up(*TOPICS), now=0, idle=5, limit=100) == []
    assert g.starved == [("req", 1)]


def test_a_group_with_only_records_to_forward_or_a_changed_state_is_taken_too() -> None:
    """Its records to forward leave, and its state is saved, with the round's steps: a group
    left out while it has nothing of its own to decide would hold them back."""
    ordering = Ordering(TOPICS, "cpl", timeline(), 5, quiet, 100, "rep", homed, GROUPS)
    assert [g.partition for g, _ in ordering.take([3], every, now=0, limit=100)] == [3]
    assert ordering.take([3], every, now=0, limit=100) == []  # its watermarks are sent
    ordering.add("req", 3, [Keyed(10, 0, 1)])  # a device of group 1
    [(group, steps)] = ordering.take([3], every, now=0, limit=100)
    assert steps == [] and [item.record.offset for item in group.take_outbox()] == [0]
    group.add_repartition([Watermark(0, [IDLE, IDLE, (30, 3, 0, 2)], at=0)], [0])
    assert [(g.partition, s) for g, s in ordering.take([3], every, now=0, limit=100)] == [
        (3, [])]
    assert ordering.take([3], every, now=0, limit=100) == []  # once


def _two_groups() -> Ordering:
    """Groups 0 and 3 of one worker, the other two groups quiet; nothing read yet from the
    repartition topic about group 0, so only its own word can let group 3 go on."""
    def restore(partition: int) -> GroupState:
        marks = dict(quiet(partition).watermarks)
        marks.update({(0, rank): UNKNOWN for rank in (1, 2, 3)})
        return GroupState([0, 0], marks)

    return Ordering(TOPICS, "cpl", timeline(), 5.0, restore, 100, "rep", classify=homed,
                    partitions=GROUPS)


def _steps_of_3(ordering: Ordering, caught: Any) -> list[Any]:
    """What group 3 decides in a round over groups 0 and 3."""
    return dict(ordering.take([0, 3], caught, 0.0, 100)).get(ordering.group(3), [])


def every(topic: str, partition: int) -> bool:
    return True


def test_a_group_takes_the_watermarks_of_the_groups_of_its_own_worker_directly() -> None:
    """Through the repartition topic a watermark comes a produce and a fetch later: live,
    most of the p99."""
    ordering = _two_groups()
    ordering.add("resp", 3, [Keyed(20, 0, 3)])
    assert not any(steps for _, steps in ordering.take([3], every, 0.0, 100))
    ordering.add("req", 0, [Keyed(30, 0, 0)])

    def lagging(topic: str, partition: int) -> bool:  # group 0 has more requests to fetch
        return (topic, partition) != ("req", 0)

    assert [s.key for s in _steps_of_3(ordering, lagging)] == [(20, 3, 3, 0)]
    ordering.add("resp", 3, [Keyed(40, 1, 3)])  # above what group 0 has fetched
    assert _steps_of_3(ordering, lagging) == []


def test_a_groups_own_word_waits_for_the_forwards_it_sent() -> None:
    """Group 0 fetched past a record it forwards to group 3: until that forward has come
    through the repartition topic, group 0's word would let group 3 decide past it."""
    ordering = _two_groups()
    ordering.add("resp", 3, [Keyed(20, 0, 3)])
    ordering.add("req", 0, [Keyed(15, 5, 3), Keyed(30, 6, 0)])  # offset 5 lives on 3
    assert _steps_of_3(ordering, every) == []
    ordering.group(3).add_repartition([forwarded(15, 0, 2, 5, at=0)], [0])
    assert [(s.key, s.topic) for s in _steps_of_3(ordering, every)] == [
        ((15, 2, 0, 5), FORWARDED), ((20, 3, 3, 0), "resp")]


def test_a_forward_on_its_way_holds_back_even_a_group_that_said_idle_before() -> None:
    """Group 3 has read group 0's last watermark, idle; then group 0 fetches a record it
    forwards to group 3. Until the forward has come, group 0's old idle must not let group 3
    decide past it."""
    ordering = Ordering(TOPICS, "cpl", timeline(), 5.0, quiet, 100, "rep", classify=homed,
                        partitions=GROUPS)  # every group has said idle
    ordering.take([0, 3], every, 0.0, 100)
    ordering.add("req", 0, [Keyed(100, 5, 3)])  # lives on 3
    ordering.add("resp", 3, [Keyed(150, 0, 3)])
    assert _steps_of_3(ordering, every) == []
    ordering.group(3).add_repartition([forwarded(100, 0, 2, 5, at=0)], [0])
    assert [(s.key, s.topic) for s in _steps_of_3(ordering, every)] == [
        ((100, 2, 0, 5), FORWARDED), ((150, 3, 3, 0), "resp")]


def test_a_groups_own_word_waits_until_what_was_forwarded_before_it_was_made_is_read() -> None:
    """After a restart or a rebalance the groups are new: what group 0 forwarded before is
    in the repartition topic, not in what group 0 has sent since. Its word counts once group
    3 has read its repartition partition to the end."""
    ordering = _two_groups()
    ordering.add("resp", 3, [Keyed(20, 0, 3)])
    ordering.add("req", 0, [Keyed(30, 6, 0)])  # offset 5 went to group 3 before the restart

    def unread(topic: str, partition: int) -> bool:
        return topic != "rep"

    assert _steps_of_3(ordering, unread) == []
    ordering.group(3).add_repartition([forwarded(15, 0, 2, 5, at=0)], [0])
    assert [(s.key, s.topic) for s in _steps_of_3(ordering, every)] == [
        ((15, 2, 0, 5), FORWARDED), ((20, 3, 3, 0), "resp")]


# Utils.murmur2 in Kafka's Java client, from its UtilsTest (signed 32-bit)
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string":
                -985981536, b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}


def test_a_device_lives_where_a_java_producer_and_aiokafka_put_its_key() -> None:
    """The home of a device is the partition Kafka's own producers pick for its ID: the
    murmur2 of every length of key (every tail of 0 to 3 bytes) is Java's and aiokafka's."""
    for key, signed in JAVA_MURMUR2.items():
        assert repartition.murmur2(key) == signed & 0xFFFFFFFF
    rng = random.Random(5)
    for length in range(80):
        for _ in range(25):
            key = rng.randbytes(length)
            assert repartition.murmur2(key) == aiokafka_murmur2(key), key
    assert repartition.home_of("00-DB-03-00-00-4E-1F-00", 8) == (
        aiokafka_murmur2(b"00-DB-03-00-00-4E-1F-00") & 0x7FFFFFFF) % 8


# Partition time: a record whose timestamp went back takes the highest before it on its
# partition, so that what a group has fetched of a partition bounds what it fetches next.

def test_a_record_whose_clock_went_back_is_ordered_at_its_partitions_time() -> None:
    """Group 0 has fetched a request at 30 and says so; its next request, stamped 10 by a
    clock that went back, lives on group 3. Forwarded at 10, it would reach group 3 after
    group 3 had decided its response at 20, which replay puts after it."""
    ordering = _two_groups()
    ordering.add("req", 0, [Keyed(30, 0, 0), Keyed(10, 1, 3)])
    assert [item.key for item in ordering.group(0).take_outbox()] == [(30, 2, 0, 1)]
    assert ordering.group(0).watermarks(lambda topic: False)[1] == (30, 2, 0, 1)
    records = [replay.Record(t.REQUESTS, 0, 0, 30, None, None),
               replay.Record(t.REQUESTS, 0, 1, 10, None, None)]
    assert [r.timestamp for r in replay.at_partition_time(records)] == [30, 30]


def test_a_group_restarts_at_the_partition_time_of_the_offset_it_commits() -> None:
    g = waiting_group(quiet(3).watermarks)
    g.add("req", [Keyed(50, 0, 3), Keyed(5, 1, 3), Keyed(60, 2, 3)])
    g.add("resp", [Keyed(40, 0, 3)])
    steps = g.take(caught_up("inv", "resp"), now=0, idle=5, limit=2)  # resp 0, req 0
    assert [s.key for s in steps] == [(40, 3, 3, 0), (50, 2, 3, 0)]
    g.settle()
    assert g.committable("req") == 1 and g.state.times == {2: 50, 3: 40}
    again = PartitionGroup(3, TOPICS, "cpl", timeline(), GroupState.from_dict(
        g.state.to_dict(3)), GROUPS, homed)
    again.add("req", [Keyed(5, 1, 3), Keyed(60, 2, 3)])
    assert [item.key for item in again.queues[1][2]] == [(50, 2, 3, 1), (60, 2, 3, 2)]


def test_any_fetch_order_of_misplaced_records_whose_clocks_go_back_gives_replays_order(
        monkeypatch: Any) -> None:
    """Four groups of one worker. Each partition's records come in fetches of random sizes,
    the partitions in random turns; a fifth of them live on another partition and reach it
    through a repartition topic read in random turns too; timestamps go back as well as
    forward (producers whose clocks differ). Every group decides its devices' records in
    the order ``smi replay`` gives them."""
    rng = random.Random(11)
    streams = {(topic, p): [Keyed(ts + rng.randint(-60, 60), offset,
                                  p if rng.random() < 0.8 else rng.randrange(GROUPS))
                            for offset, ts in enumerate(sorted(
                                rng.randrange(0, 3000) for _ in range(40)))]
               for topic in TOPICS for p in range(GROUPS)}
    names = dict(zip(TOPICS, t.DEVICE_INPUTS, strict=True))
    home = {(names[topic], p, r.offset): r.home for (topic, p), rs in streams.items()
            for r in rs}
    monkeypatch.setattr(replay, "home_of_record",
                        lambda r, homes: home[r.topic, r.partition, r.offset])
    expected: dict[int, list[Any]] = {g: [] for g in range(GROUPS)}
    for r in replay.in_order([replay.Record(names[topic], p, r.offset, r.timestamp, None, None)
                              for (topic, p), rs in streams.items() for r in rs], GROUPS):
        expected[home[r.topic, r.partition, r.offset]].append((r.topic, r.partition, r.offset))
    for seed in range(12):
        assert _decided_live(streams, names, random.Random(seed)) == expected, f"seed {seed}"


def _decided_live(streams: dict[tuple[str, int], list[Keyed]], names: dict[str, str],
                  rng: random.Random) -> dict[int, list[Any]]:
    ordering = Ordering(TOPICS, "cpl", timeline(), 5.0, lambda p: GroupState([0, 0]), 1 << 30,
                        "rep", classify=homed, partitions=GROUPS)
    left = {where: list(records) for where, records in streams.items()}
    on_way: dict[int, list[Forwarded]] = {g: [] for g in range(GROUPS)}  # forwards unread
    written = [0] * GROUPS
    out: dict[int, list[Any]] = {g: [] for g in range(GROUPS)}

    def caught(topic: str, p: int) -> bool:
        return not on_way[p] if topic == "rep" else not left[topic, p]

    while any(left.values()) or any(on_way.values()):
        if rng.random() < 0.7:
            where = rng.choice(list(left))
            count = rng.randrange(0, 6)
            ordering.add(where[0], where[1], left[where][:count])
            del left[where][:count]
        else:
            p = rng.randrange(GROUPS)
            count = rng.randrange(0, 4)
            ordering.group(p).add_repartition(on_way[p][:count],
                                              [f.at for f in on_way[p][:count]])
            del on_way[p][:count]
        for group, steps in ordering.take(range(GROUPS), caught, 0.0, 100):
            for item in group.take_outbox():
                on_way[item.home].append(forwarded(item.key[0], group.partition, item.key[1],
                                                   item.record.offset, written[item.home]))
                written[item.home] += 1
            out[group.partition] += [
                (names[s.item.record.topic], s.item.record.partition, s.item.record.offset)
                if s.topic == FORWARDED else (names[s.topic], group.partition,
                                              s.item.record.offset) for s in steps]
    return out

"""How the worker process tunes Python's garbage collection (``streams.worker``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from streams import worker


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of each collection that starts while the test runs; the thresholds
    the test found are put back after it."""
    saved, started = gc.get_threshold(), []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(count)
    try:
        yield started
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*saved)


def test_records_waiting_for_their_turn_are_not_walked_by_young_collections(
        collections: list[int]) -> None:
    """A backlog's records wait in the partition groups between fetch and decision: a round
    of them is made without a collection walking them (Python's default would walk them
    about thirty times here)."""
    worker.collect_less()
    gc.collect()
    collections.clear()
    waiting = [[offset] for offset in range(20_000)]  # lists, tracked as records are
    assert len(waiting) == 20_000
    assert collections == []


def test_a_collection_still_comes_once_enough_is_made(collections: list[int]) -> None:
    """Fewer collections, not none: cycles made by the worker are still freed."""
    worker.collect_less()
    gc.collect()
    collections.clear()
    made = [[offset] for offset in range(2 * worker.GC_THRESHOLDS[0])]
    assert len(made) == 2 * worker.GC_THRESHOLDS[0]
    assert 0 in collections

"""The worker's log: a failure the project explains itself is one line, a bug keeps its trace."""

from __future__ import annotations

import io
import logging

import pytest
from mode.timers import Timer

from streams.errors import BatchFailed, DeliveryFailed
from streams.logs import Explained, Overlaps
from streams.worker import _Worker
from tests.unit.test_membership import Clock


def logged(exc: BaseException) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(Explained())
    logger = logging.getLogger("test_logs")
    logger.addHandler(handler)
    try:
        try:
            raise exc
        except BaseException:
            logger.exception("Crashed reason=%r", exc)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as raised:
        return raised


def test_an_explained_failure_is_one_line() -> None:
    said = logged(chained(BatchFailed("a fetch failed halfway"), DeliveryFailed("refused")))
    assert said == "Crashed reason=BatchFailed('a fetch failed halfway')\n"


@pytest.mark.parametrize("exc", [
    KeyError("bug"),
    chained(BatchFailed("a fetch failed halfway"), KeyError("bug")),
])
def test_a_bug_keeps_its_traceback(exc: BaseException) -> None:
    said = logged(exc)
    assert "Traceback (most recent call last)" in said and "KeyError: 'bug'" in said


def test_a_chain_ended_by_from_none_is_ours_alone() -> None:
    try:
        try:
            raise KeyError("looked up")
        except KeyError:
            raise DeliveryFailed("refused") from None
    except DeliveryFailed as raised:
        said = logged(raised)
    assert said == "Crashed reason=DeliveryFailed('refused')\n"


@pytest.mark.parametrize(("level", "filtered"), [
    ("info", True), ("error", True), ("debug", False)])
def test_the_worker_filters_its_log_unless_debugging(level: str, filtered: bool) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    worker = object.__new__(_Worker)  # only its logging hook: no app, no loop
    worker.spinner = None
    try:
        worker.on_setup_root_logger(root, logging.getLevelName(level.upper()))
        assert any(isinstance(f, Explained) for f in handler.filters) is filtered
        timers = logging.getLogger("mode.timers").filters
        assert any(isinstance(f, Overlaps) for f in timers) is filtered
    finally:
        root.handlers[:] = before
        logging.getLogger("mode.timers").filters.clear()


def test_a_timer_running_over_warns_once_a_minute_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    """The warning comes from mode's own Timer, so a release of mode that words it otherwise
    fails here."""
    clock = Clock()
    timer = Timer(0.1, name="commit", clock=clock)
    logging.getLogger("mode.timers").addFilter(Overlaps(every=60.0, clock=clock))
    try:
        timer.tick()
        for runtime in (0.5, 1.75, 0.25, 0.125, 0.5):  # each run outlasts 0.1 s
            clock.now += 20  # its sleep
            timer.on_before_yield()
            clock.now += runtime
            timer.tick()
    finally:
        logging.getLogger("mode.timers").filters.clear()
    said = [r.getMessage() for r in caplog.records if r.name == "mode.timers"]
    assert said == [
        "Timer commit is overlapping (interval=0.1 runtime=0.5)",
        "Timer commit ran longer than its interval (0.1 s) 3 times since the last such "
        "warning, the longest 1.750 s"]

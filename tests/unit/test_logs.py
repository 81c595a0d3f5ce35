"""The worker's log: a failure the project explains itself is one line, a bug keeps its trace."""

from __future__ import annotations

import io
import logging

import pytest

from streams.errors import BatchFailed, DeliveryFailed
from streams.logs import Explained
from streams.worker import _Worker


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
    finally:
        root.handlers[:] = before

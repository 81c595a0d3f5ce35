"""What the log shows a person: aiokafka's log kept quiet until the broker answers (a client
that cannot connect logs every attempt before it raises), and no traceback for a failure this
project raises and explains itself; either way one line names the cause."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

from schemas.errors import SmiError

_AIOKAFKA = logging.getLogger("aiokafka")


class _LastError(logging.Handler):
    """Keeps aiokafka's last error (such as a refused login) for that one line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


LAST = _LastError()


def quiet_aiokafka() -> None:
    _AIOKAFKA.addHandler(LAST)
    _AIOKAFKA.propagate = False


def aiokafka_back() -> None:
    """Once the broker answers, aiokafka's log goes where every other log goes."""
    _AIOKAFKA.removeHandler(LAST)
    _AIOKAFKA.propagate = True


class Explained(logging.Filter):
    """Drops the traceback from a log record whose exception is one of this project's own
    (an :class:`~streams.errors.SmiError`, as is every cause it chains to): its message says
    what went wrong, and the worker's last line names the cause. faust logs a crash twice with
    its traceback, which buried that line. A record caused by any other exception (a bug) keeps
    its traceback, and so does every record at ``SMI_LOG_LEVEL=debug``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _ours(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True


def _ours(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if not isinstance(exc, SmiError):
            return False
        seen.add(id(exc))
        # the chain as Python prints it: ``raise ... from None`` ends it
        exc = exc.__cause__ if exc.__cause__ or exc.__suppress_context__ else exc.__context__
    return bool(seen)


OVERLAP = "Timer %s is overlapping (interval=%r runtime=%r)"  # mode's words (mode/timers.py)


class Overlaps(logging.Filter):
    """faust's timers warn each time a run outlasts its interval. The commit's interval is
    0.1 s and a commit waits for the broker, so on a backlog it warned several times a second
    (the durations are in ``/metrics`` as ``smi_commit_duration_seconds``). Let through one
    such warning per timer every ``every`` seconds, saying how many it stands for and the
    longest run among them. For ``mode.timers``'s logger."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        # per timer: when one was last let through; how many since, and the longest run
        self.held: dict[str, tuple[float, int, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != OVERLAP or not isinstance(record.args, tuple):
            return True
        name, interval, runtime = cast(tuple[str, float, float], record.args)
        shown, count, longest = self.held.get(name, (float("-inf"), 0, 0.0))
        count, longest, now = count + 1, max(longest, runtime), self.clock()
        if now - shown < self.every:
            self.held[name] = (shown, count, longest)
            return False
        self.held[name] = (now, 0, 0.0)
        if count > 1:
            record.msg = ("Timer %s ran longer than its interval (%r s) %d times since the "
                          "last such warning, the longest %.3f s")
            record.args = (name, interval, count, longest)
        return True

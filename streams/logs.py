"""aiokafka's log, kept quiet until the broker answers: a client that cannot connect logs
every attempt before it raises, and a person should see one line that names the cause."""

from __future__ import annotations

import logging

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

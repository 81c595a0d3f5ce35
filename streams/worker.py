"""Runs the faust worker for the settings: topics first, then the app."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import TextIO, cast

import faust

from streams import logs, topics
from streams.app import SmiApp, create_app
from streams.errors import ConfigError, SmiError
from streams.net import cannot_bind
from streams.settings import Settings
from streams.tables import flush_tables
from streams.transport import Consumer


def run(settings: Settings) -> int:
    collect_less()
    # faust (mode) runs on the thread's current loop: create the topics on that same loop.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(topics.refuse_lost_table(settings))
    loop.run_until_complete(topics.ensure(settings))
    logs.aiokafka_back()  # smi quiets it until the broker answers
    state = settings.data_dir / settings.app_id
    lock_state(state)
    check_web_port(settings)
    forget_unclean_tables(settings, state)
    app = create_app(settings)
    app.task(freeze_startup_objects)
    worker = _Worker(app, loglevel=settings.log_level, loop=loop)
    # at WARN and above faust's terminal spinner sets the root logger to DEBUG to spin on every
    # record: every debug call in faust and aiokafka then builds a record (a tenth of the time)
    worker.spinner = None
    try:
        worker.execute_from_commandline()  # exits the process when the worker stops
    except BaseException as stop:
        if (isinstance(stop, SystemExit) and stop.code in (0, None)
                and not worker.crash_reason and _committed_to_the_end(app)):
            flush_tables(app.tables.values())
            (state / CLEAN_STOP).touch()  # every batch decided was committed
        else:
            exit_if_stuck()
            if isinstance(worker.crash_reason, SmiError):  # the cause, last and on one line
                raise worker.crash_reason from None
        raise
    return 0


def _committed_to_the_end(app: faust.App) -> bool:
    """Whether the stop's last commit went through: faust (mode) logs a failure of the
    consumer's stop and exits 0, and tables kept then hold writes whose outputs, or whose
    transaction, never committed."""
    consumer = cast(Consumer, app.consumer)
    return consumer.failed is None and consumer.commit_error is None


STUCK_SECONDS = 10.0  # after the worker has stopped
CRASHED_STOP_SECONDS = 90.0  # from a crash: faust's own stop gives its services 60 s


def exit_if_stuck(seconds: float = STUCK_SECONDS) -> None:
    """After a crash, faust's consumer thread may still be busy with the group (rejoining
    it, say), and stopping it, or the interpreter's exit, waits for it: end the process if it
    is still there after ``seconds``."""
    timer = threading.Timer(seconds, _exit_now)
    timer.daemon = True
    timer.start()


def _exit_now() -> None:
    logging.shutdown()
    os._exit(1)


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        if level > logging.DEBUG:
            for handler in logger.handlers:
                handler.addFilter(logs.Explained())
            logging.getLogger("mode.timers").addFilter(logs.Overlaps())

    def on_worker_shutdown(self) -> None:
        super().on_worker_shutdown()
        if self.crash_reason is not None:
            exit_if_stuck(CRASHED_STOP_SECONDS)


log = logging.getLogger(__name__)

CLEAN_STOP = "clean-stop"


# Python's default is a young collection every 700 allocations. On a backlog, records wait in
# the partition groups between fetch and decision, so at 700 each was walked by young and middle
# collections and carried into full ones: about 10 us of a message's CPU (docs/decisions.md).
GC_THRESHOLDS = (50_000, 20, 10)


def collect_less() -> None:
    """Collect cycles after 50,000 allocations, so that most records are decided before a
    young collection walks them."""
    gc.set_threshold(*GC_THRESHOLDS)


async def freeze_startup_objects(app: faust.App) -> None:
    """Once the worker is up, leave the objects made so far out of Python's full collections.

    They are the modules, faust's services and the clients: objects that live as long as the
    process, which each full collection walked again, stopping the worker every few seconds
    under load (docs/decisions.md)."""
    await cast(SmiApp, app).smi.processor.cpl.ready.wait()
    gc.collect()
    gc.freeze()
    log.info("%d objects made at start-up left out of garbage collection", gc.get_freeze_count())


def check_web_port(settings: Settings) -> None:
    """faust finds the web port taken only once it is up, and crashes with its whole log:
    say which port, first. (Something may still take it in between; then faust's log says.)"""
    if (exc := cannot_bind(settings.web_host, settings.web_port)) is not None:
        raise ConfigError(f"SMI_WEB_PORT={settings.web_port} on SMI_WEB_HOST="
                          f"{settings.web_host} cannot be used: {exc.strerror}")


LOCK = "worker.lock"
_held: list[TextIO] = []  # open, and so locked, until the process ends


def lock_state(state: Path) -> TextIO:
    """One worker per state directory. A second one would take the first one's tables for a
    crashed run's and delete them. The lock goes with the process, kill -9 included."""
    state.mkdir(parents=True, exist_ok=True)
    handle = (state / LOCK).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"{state} is in use by the worker with {holder}: give each worker "
                          "its own SMI_DATA_DIR") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    _held.append(handle)
    return handle


def forget_unclean_tables(settings: Settings, state: Path) -> None:
    """After a crash, RocksDB tables may hold writes of batches that never committed: their
    outputs never went out (at_least_once), or their transaction was aborted (exactly_once).
    Deciding again on top of them would lose those outputs, so the tables are rebuilt from the
    changelog instead, which holds only what was sent (or committed). A memory store is always
    rebuilt that way."""
    marker, tables = state / CLEAN_STOP, state / "v1" / "tables"
    if settings.store.startswith("rocksdb") and tables.exists() and not marker.exists():
        log.warning("the last run of %s did not stop cleanly: its tables in %s are rebuilt "
                    "from the changelog", settings.app_id, tables)
        shutil.rmtree(tables)
    marker.unlink(missing_ok=True)

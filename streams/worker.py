"""Runs the faust worker for the settings: topics first, then the app."""

from __future__ import annotations

import asyncio

import faust

from streams import topics
from streams.app import create_app
from streams.settings import Settings


def run(settings: Settings) -> int:
    # faust (mode) runs on the thread's current loop: create the topics on that same loop.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(topics.ensure(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, loop=loop)
    # at WARN and above faust's terminal spinner sets the root logger to DEBUG to spin on every
    # record: every debug call in faust and aiokafka then builds a record (a tenth of the time)
    worker.spinner = None
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0

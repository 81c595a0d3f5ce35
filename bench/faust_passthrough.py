"""A faust pass-through: what any faust-based worker pays before it decides anything.

``python bench/faust_passthrough.py worker`` with the bench's ``SMI_*`` variables: one agent
reads the four input topics in batches (``noack_take``, as the worker does), decodes each value
with orjson, sends it on to ``bench.sink`` through faust's producer and acks it. No table, no
rules. ``bench/run.py`` times it like the worker, from ready until its group has caught up.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams import topics as t
from streams.settings import Settings


def create_app(settings: Settings) -> faust.App:
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.app_id, broker=f"kafka://{settings.broker}",
                    web_port=settings.web_port, autodiscover=False,
                    consumer_auto_offset_reset="earliest", producer_linger_ms=5,
                    datadir=str(settings.data_dir / settings.app_id))
    inputs = app.topic(*(settings.topic(n) for n in t.INPUTS), key_serializer="raw",
                       value_serializer="raw")
    sink = app.topic(settings.topic("bench.sink"), key_serializer="raw", value_serializer="raw")

    @app.agent(inputs)
    async def passthrough(stream: faust.StreamT) -> None:
        async for events in stream.noack_take(settings.batch_size,  # type: ignore[attr-defined]
                                              settings.batch_seconds):
            for event in events:
                with contextlib.suppress(orjson.JSONDecodeError):  # ~0.1% broken input
                    orjson.loads(event.message.value or b"null")
                sink.send_soon(key=event.message.key, value=event.message.value)
                event.ack()

    @app.page("/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"ready": True, "app": app.conf.id})

    return app


if __name__ == "__main__":
    create_app(Settings()).main()

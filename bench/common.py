"""What the benchmark's parts share."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from typing import Any

from streams.settings import Settings
from streams.tools.client import Kafka, input_topics
from streams.tools.progress import Progress


async def caught_up(settings: Settings, total: int | None = None,
                    process: subprocess.Popen[bytes] | None = None,
                    topics: list[str] | None = None) -> None:
    """Until the worker's group has consumed every input (or every one of ``topics``), with a
    progress bar when the input's size is known."""
    progress = Progress(f"{settings.app_id} consuming", total) if total else None
    names = topics if topics is not None else input_topics(settings)
    async with Kafka(settings) as kafka:
        while (lag := await kafka.lag(settings.app_id, names)) > 0:
            if process is not None and process.poll() is not None:
                raise SystemExit(f"the worker exited: see {settings.data_dir}")
            if progress and total:
                progress.advance(max(0, total - lag - progress.done))
            await asyncio.sleep(0.5)
    if progress and total:
        progress.advance(total - progress.done)
        progress.close()


def worker_stats(settings: Settings) -> dict[str, Any]:
    """The worker's ``/stats``: its devices by status and what it decided since it started."""
    url = f"http://127.0.0.1:{settings.web_port}/stats"
    with urllib.request.urlopen(url, timeout=60) as response:
        return dict(json.loads(response.read()))

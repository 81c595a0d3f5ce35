"""What the benchmark's parts share."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from streams.errors import SmiError
from streams.settings import Settings
from streams.tools.client import Kafka, input_topics, offsets_behind
from streams.tools.progress import Progress


def run_main(main: Callable[[], int]) -> int:
    """A benchmark command's exit status: an error raised on purpose (the broker's port is
    taken, a worker exited) is one line naming its cause, as ``smi`` prints it."""
    try:
        return main()
    except SmiError as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        return 1


NEAR_THE_END = 25_000  # events of lag, about a second's work: from there the lag is polled often


async def caught_up(settings: Settings, total: int | None = None,
                    process: subprocess.Popen[bytes] | None = None,
                    topics: list[str] | None = None) -> None:
    """Until the worker's group has consumed every input (or every one of ``topics``), with a
    progress bar when the input's size is known."""
    progress = Progress(f"{settings.app_id} consuming", total) if total else None
    names = topics if topics is not None else input_topics(settings)
    async with Kafka(settings) as kafka:
        previous = -1
        while (gap := offsets_behind(await kafka.behind(settings.app_id, names))) > 0:
            # a gap that stopped moving may hold transaction markers only: read it then, not
            # while the worker moves through it (that took CPU from the worker being timed,
            # and saw the end up to a second late)
            if gap == previous and await kafka.lag(settings.app_id, names) == 0:
                break
            if process is not None and process.poll() is not None:
                raise SystemExit(f"the worker exited: see {settings.data_dir}")
            if progress and total:
                progress.advance(max(0, total - gap - progress.done))
            previous = gap
            # the pass-through it is compared with stops at its last message: a worker's end
            # seen up to half a second late cost it a few percent of a 10 s run
            await asyncio.sleep(0.05 if gap < NEAR_THE_END else 0.5)
    if progress and total:
        progress.advance(total - progress.done)
        progress.close()


def worker_stats(settings: Settings) -> dict[str, Any]:
    """The worker's ``/stats``: its devices by status and what it decided since it started."""
    url = f"http://127.0.0.1:{settings.web_port}/stats"
    with urllib.request.urlopen(url, timeout=60) as response:
        return dict(json.loads(response.read()))


class Timed(NamedTuple):
    """A contender over a backlog: its rate, its CPU (user and system) per message, and for a
    worker the corrections it made."""

    rate: float
    cpu_us: float
    made: dict[str, int] | None = None


def timed(total: int, seconds: float, cpu: float, made: dict[str, int] | None = None) -> Timed:
    """``total`` messages in ``seconds`` of wall time and ``cpu`` seconds of CPU."""
    return Timed(total / seconds, cpu * 1e6 / total, made)


def cpu_seconds(pid: int | None = None) -> float:
    """User and system CPU a process has used (this one without ``pid``): a cost that moves
    far less with this machine's drift than a rate does, since time the process waits for a
    core is not in it. Read from ``/proc`` (Linux)."""
    if pid is None:
        return time.process_time()
    # the command name in brackets may hold spaces: the fields are after its ")"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

"""Where the worker's time goes: ``.venv/bin/python bench/profile.py [--store rocksdb://]``.

Fills one input like ``bench/run.py`` (the CPL, the inventory, then the events, all written
before the worker starts), starts a worker on it and samples it with py-spy until its group has
caught up. Writes the collapsed stacks (open them in speedscope or flamegraph.pl) and prints the
functions with the most time, inclusive and exclusive, as shares of all samples.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import caught_up, run_main  # noqa: E402
from bench.run import PORT, backlog, log  # noqa: E402
from streams import broker  # noqa: E402
from streams.settings import BrokerSettings, Settings  # noqa: E402
from streams.tools.supervise import start_worker, stop_worker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--guarantee", default="at_least_once")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    cluster = broker.up(BrokerSettings(), Settings(), port=PORT)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = Settings().model_copy(update={
        "broker": cluster.bootstrap, "topic_prefix": f"prof-{stamp}.", "app_id": f"prof-{stamp}",
        "store": args.store, "processing_guarantee": args.guarantee,
        "data_dir": ROOT / ".data" / "bench", "web_port": 16167})
    total = backlog(settings, args.devices, args.events)
    out = ROOT / ".data" / "bench" / f"profile-{stamp}.txt"
    process = start_worker(settings, quiet=True)
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                            str(process.pid), "--format", "raw", "--rate", "200", "--output",
                            str(out), "--nonblocking"], stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    asyncio.run(caught_up(settings, total, process))
    log(f"{total:,} events in {time.perf_counter() - started:.1f}s")
    spy.send_signal(2)
    spy.wait(timeout=60)
    stop_worker(process)
    report(out, args.top)
    return 0


def report(path: Path, top: int) -> None:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_function(f) for f in stack.split(";")]
        n = int(count)
        total += n
        exclusive[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"{total} samples; collapsed stacks in {path}")
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        print(f"\n{title}:")
        for frame, n in counter.most_common(top):
            print(f"{100 * n / total:5.1f}%  {frame}")


def _function(frame: str) -> str:
    """``name (path/file.py:line)`` -> ``name (file.py)``: lines of one function together."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"


if __name__ == "__main__":
    sys.exit(run_main(main))

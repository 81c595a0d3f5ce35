"""Starting and stopping ``smi worker`` child processes: for the demo and the simulator, and
for ``smi worker --processes N`` (several members of one group from one command)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from streams.errors import WorkerFailed
from streams.settings import Settings, web_address

SMI = str(Path(sys.executable).with_name("smi"))


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child ``smi worker`` use these settings: every one of them,
    so that a setting changed in code (``model_copy``) reaches the child too."""
    env = {**os.environ}
    for name in type(settings).model_fields:
        variable = f"SMI_{name.upper()}"
        value = _env_value(getattr(settings, name))
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    env.update(extra)
    return env


def _env_value(value: object) -> str | None:
    """A setting as pydantic-settings reads it back from the environment."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list | dict):
        return json.dumps(value)
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    return str(value)


def start_worker(
    settings: Settings, quiet: bool = False, timeout: float = 120
) -> subprocess.Popen[bytes]:
    """Start ``smi worker`` with ``settings``; return once its /health says ready."""
    process, log = spawn_worker(settings)
    if not quiet:
        print(f"worker {settings.app_id} (log {log}) starting", end="", file=sys.stderr,
              flush=True)
    wait_healthy(settings, process, log, quiet, timeout)
    if not quiet:
        print(" ready", file=sys.stderr)
    return process


STARTED = "== smi worker started"  # the line spawn_worker begins each run's log with


def spawn_worker(settings: Settings) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``smi worker`` with ``settings`` and return at once, with its log's path."""
    log = settings.data_dir / f"{settings.app_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # one log per app id, appended run after run: where this run begins (see _why)
        out.write(f"{STARTED} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        out.flush()
        process = subprocess.Popen([SMI, "worker"], env=worker_env(settings), stdout=out,
                                   stderr=subprocess.STDOUT)
    return process, log


def run_members(settings: Settings, processes: int) -> int:
    """``processes`` workers of one group, each in a process of its own (a Python worker uses
    one core), with its own data directory (``<SMI_DATA_DIR>/member-<n>``) and web port
    (``SMI_WEB_PORT + n``), logging to this command's output. SIGTERM or SIGINT stops them
    all; so does any one of them exiting. Returns the first non-zero exit code, else 0."""
    members = [subprocess.Popen([SMI, "worker"], env=worker_env(member_settings(settings, n)))
               for n in range(processes)]
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    while not stopping and all(m.poll() is None for m in members):
        time.sleep(0.2)
    for member in members:
        if member.poll() is None:
            member.send_signal(signal.SIGTERM)
    codes = [_waited(member) for member in members]
    return next((code for code in codes if code != 0), 0)


def member_settings(settings: Settings, n: int) -> Settings:
    """The settings of member ``n`` (from 0) of ``smi worker --processes``."""
    return settings.model_copy(update={"data_dir": settings.data_dir / f"member-{n}",
                                       "web_port": settings.web_port + n})


def _waited(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """Its exit code, as a shell gives it: 128 + the signal for one a signal ended."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return 128 - code if code < 0 else code


def wait_healthy(
    settings: Settings, process: subprocess.Popen[bytes], log: Path, quiet: bool,
    timeout: float = 120,
) -> None:
    deadline = time.monotonic() + timeout
    url = f"{web_address(settings.web_host, settings.web_port)}/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkerFailed(f"the worker exited{_why(log)}: see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
        if not quiet:
            print(".", end="", file=sys.stderr, flush=True)
    process.terminate()
    raise WorkerFailed(f"the worker did not become ready in {timeout:.0f}s: see {log}")


def _why(log: Path) -> str:
    """The one line a worker that refused to start ends its log with (``smi: ...``), if this
    run said one: not an earlier run's."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    starts = [n for n, line in enumerate(lines) if line.startswith(STARTED)]
    run = lines[starts[-1]:] if starts else lines
    said = [line for line in run[-20:] if line.startswith("smi: ")]
    return f" ({said[-1].removeprefix('smi: ')})" if said else ""


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

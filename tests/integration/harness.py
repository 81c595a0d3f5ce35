"""Helpers the integration tests share: a real worker process, and Kafka reads and writes
through aiokafka (a client independent of faust)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SMI = str(Path(sys.executable).with_name("smi"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    """``smi worker`` in a child process, with its own app id (group), prefix and web port."""

    bootstrap: str
    app_id: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def settings_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SMI_BROKER": self.bootstrap,
            "SMI_APP_ID": self.app_id,
            "SMI_TOPIC_PREFIX": self.prefix,
            "SMI_WEB_PORT": str(self.web_port),
            "SMI_COMMIT_INTERVAL": "0.1",
            "SMI_LOG_LEVEL": "info",
            **self.env,
        }

    def data_dir(self) -> Path:
        """The worker's data directory (SMI_DATA_DIR)."""
        return Path(self.settings_env()["SMI_DATA_DIR"])

    def settings(self) -> Settings:
        return Settings(app_id=self.app_id, topic_prefix=self.prefix, broker=self.bootstrap)

    def start(self, log_dir: Path, timeout: float = 90, wait: bool = True) -> Worker:
        self.log_path = log_dir / f"{self.app_id}-{self.web_port}.log"
        out = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            [SMI, "worker"], env=self.settings_env(), stdout=out, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def restart(self, timeout: float = 120) -> Worker:
        """Start the same worker again (same group, port and log) after :meth:`stop`."""
        assert self.log_path is not None, "never started"
        return self.start(self.log_path.parent, timeout)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: see {self.log_path}\n{self.tail()}")
            if self.get("/health", quiet=True) == {"ready": True, "app": self.app_id}:
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready in {timeout}s: see {self.log_path}\n{self.tail()}")

    def get(self, path: str, quiet: bool = False) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
                return json.loads(r.read())
        except Exception:
            if quiet:
                return None
            raise

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def rejection_reasons(worker: Worker, settings: Settings) -> list[str]:
    """Once the worker has read everything, the reasons on ``duis.rejections`` (``settings``
    saying how to reach the broker: TLS, SASL)."""
    from streams.tools.client import Kafka, input_topics

    async def read() -> list[str]:
        async with Kafka(settings) as kafka:
            await kafka.wait_consumed(worker.app_id, input_topics(settings))
            return [v["reason"] for _, v, _, _ in
                    await kafka.read_all(settings.topic("duis.rejections"))]

    return asyncio.run(read())

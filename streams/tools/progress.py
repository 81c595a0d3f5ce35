"""A one-line progress bar on standard error for long commands (no dependency).

On a terminal the line is redrawn five times a second; written to a file or a CI log, a plain
line every ten seconds says the same without filling the log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None, stream: TextIO = sys.stderr) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.done = 0
        self.started = time.monotonic()
        self._shown_at = self.started  # the first line after one interval, not at once
        self.interactive = stream.isatty()
        self._every = 0.2 if self.interactive else 10.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._shown_at >= self._every:
            self._shown_at = now
            self._show()

    def close(self) -> None:
        self._show()
        if self.interactive:
            self.stream.write("\n")
        self.stream.flush()

    def _show(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            text = f"{self.label} [{bar:<30}] {self.done:,}/{self.total:,} {share:4.0%}"
        else:
            text = f"{self.label} {self.done:,}"
        # a rate over less than a second says little (a first batch in no time reads as millions/s)
        pace = f"  {rate:,.0f}/s" if elapsed >= 1.0 else ""
        line = f"{text}{pace}  {elapsed:.1f}s"
        self.stream.write(f"\r{line}" if self.interactive else f"{line}\n")
        self.stream.flush()

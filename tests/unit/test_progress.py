"""Progress on long commands: a redrawn bar on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from streams.tools.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_plain_lines_and_a_terminal_one_redrawn_bar() -> None:
    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        progress = Progress("reading", 1000, stream)
        for _ in range(1000):
            progress.advance()
        progress.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2  # the first step and the end
    assert lines[-1].startswith("reading [##############################] 1,000/1,000 100%")
    assert terminal.getvalue().startswith("\r") and terminal.getvalue().endswith("\n")
    assert "1,000/1,000 100%" in terminal.getvalue().rsplit("\r", 1)[-1]

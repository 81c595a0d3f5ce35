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
    assert "\r" not in log.getvalue() and len(lines) == 1  # in under ten seconds: the end only
    assert lines[-1].startswith("reading [##############################] 1,000/1,000 100%")
    assert "/s" not in lines[-1]  # no rate over less than a second
    assert terminal.getvalue().startswith("\r") and terminal.getvalue().endswith("\n")
    assert "1,000/1,000 100%" in terminal.getvalue().rsplit("\r", 1)[-1]


def test_a_rate_is_shown_once_a_second_has_passed() -> None:
    log = io.StringIO()
    progress = Progress("reading", 10, log)
    progress.started -= 2.0
    progress.advance(10)
    progress.close()
    assert "/s" in log.getvalue().splitlines()[-1].split("100%")[1]

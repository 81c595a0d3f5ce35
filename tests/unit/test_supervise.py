"""The environment a child worker is started with (the demo, the simulator, the benchmark)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from pydantic import SecretStr

from streams.settings import Settings
from streams.tools import supervise
from streams.tools.supervise import STARTED, _why, spawn_worker, worker_env


def test_a_child_worker_gets_every_setting_changed_in_code(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the benchmark once changed processing_guarantee with model_copy, and its exactly_once
    # workers ran at_least_once because that setting was not passed on
    changed = Settings().model_copy(update={
        "processing_guarantee": "exactly_once", "batch_size": 5000, "commit_interval": 0.5,
        "secmp0007": True, "suspended_exceptions": ("11.1", "8.2"),
        "response_codes": {"device-suspended": "E99"}, "api_token": SecretStr("token")})
    for name, value in worker_env(changed).items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert {name: getattr(child, name) for name in Settings.model_fields} == {
        name: getattr(changed, name) for name in Settings.model_fields}


def test_a_setting_unset_in_code_is_unset_for_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMI_API_TOKEN", "from-the-parent")
    env = worker_env(Settings().model_copy(update={"api_token": None}))
    assert "SMI_API_TOKEN" not in env


def test_a_worker_that_refused_to_start_is_quoted(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("some faust line\nsmi: the broker cannot be reached at SMI_BROKER=x:1\n")
    assert _why(log) == " (the broker cannot be reached at SMI_BROKER=x:1)"
    log.write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    assert _why(log) == ""
    assert _why(tmp_path / "never-written.log") == ""


def test_an_earlier_runs_refusal_is_not_quoted_for_a_later_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="quoted")
    log = tmp_path / "quoted.log"
    log.write_text(f"{STARTED} 2026-01-01 00:00:00\nsmi: an earlier refusal\n")
    with mock.patch.object(supervise.subprocess, "Popen") as popen:
        spawn_worker(settings)  # this run dies before it writes a line
    popen.assert_called_once()
    assert _why(log) == ""
    with open(log, "a") as out:
        out.write("smi: this run's refusal\n")
    assert _why(log) == " (this run's refusal)"


def test_a_member_a_signal_ended_exits_as_a_shell_reports_it() -> None:
    import subprocess

    from streams.tools.supervise import _waited

    killed = subprocess.Popen(["sh", "-c", "kill -9 $$"])
    assert _waited(killed) == 137  # 128 + SIGKILL, not 247
    assert _waited(subprocess.Popen(["sh", "-c", "exit 3"])) == 3

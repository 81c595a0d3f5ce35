"""The CLI as people meet it: errors in one line, the version, tail's output, the settings'
defaults and their table in the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest

from streams.cli.io import envelope, readable
from streams.cli.main import _setting, main
from streams.settings import BrokerSettings, Settings

README = Path(__file__).resolve().parents[2] / "README.md"
SMI = str(Path(sys.executable).with_name("smi"))


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMI_LOG_LEVEL", "SMI_BROKER", "SMI_DATA_DIR", "SMI_KAFKA_HOME"):
        monkeypatch.delenv(name, raising=False)


def test_a_bad_secret_is_named_but_not_shown() -> None:
    assert _setting(("sasl_password",), "hunter2") == " SMI_SASL_PASSWORD=***"
    assert _setting(("api_token",), "t0ken") == " SMI_API_TOKEN=***"
    assert _setting(("response_codes", "success"), 5) == " SMI_RESPONSE_CODES_SUCCESS=5"


@pytest.mark.parametrize("command", [["topics"], ["worker"], ["tail", "duis.rejections"],
                                     ["produce", "duis.service-requests"]])
def test_an_unreachable_broker_is_one_line_naming_it(command: list[str], tmp_path: Path) -> None:
    # a process of its own: aiokafka's own log lines reach the terminal there, not pytest
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMI_")}
    env |= {"SMI_BROKER": "127.0.0.1:1", "SMI_DATA_DIR": str(tmp_path)}  # nothing on port 1
    done = subprocess.run([SMI, *command], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("smi: the broker cannot be reached at SMI_BROKER=127.0.0.1:1: ")
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_LOG_LEVEL", "debug")
    monkeypatch.setenv("SMI_PARTITIONS", "0")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("smi: bad setting SMI_PARTITIONS=0: ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"smi {version('smi-streams')}"


def test_data_goes_under_the_working_directory_or_smi_data_dir(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / ".data"
    assert BrokerSettings().kafka_home == tmp_path / ".data" / "kafka"
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Settings().data_dir == tmp_path / "elsewhere"
    assert BrokerSettings().kafka_home == tmp_path / "elsewhere" / "kafka"
    monkeypatch.setenv("SMI_KAFKA_HOME", str(tmp_path / "jars"))
    assert BrokerSettings().kafka_home == tmp_path / "jars"


def test_tail_prints_ids_whole() -> None:
    request_id = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-00-01:1"
    line = readable("duis.rejections", 3, 7, b"00-DB-12-34-56-78-00-01",
                    orjson.dumps({"request_id": request_id, "reason": "not-authorised"}))
    assert line == (f"duis.rejections[3]@7 00-DB-12-34-56-78-00-01 request_id={request_id} "
                    "reason=not-authorised")


def test_tail_json_is_an_envelope() -> None:
    line = envelope(2, 41, 1_764_000_000_000, b"00-DB", b'{"sr": "11.2"}')
    assert orjson.loads(line) == {"key": "00-DB", "partition": 2, "offset": 41,
                                  "timestamp": 1_764_000_000_000, "value": {"sr": "11.2"}}
    assert orjson.loads(envelope(0, 0, 0, None, b"not json"))["value"] == "not json"


def test_the_readme_lists_every_setting_and_only_settings() -> None:
    table = [line for line in README.read_text().splitlines() if line.startswith("| `SMI_")]
    listed = {name for line in table for name in re.findall(r"`SMI_(\w+)`", line.split("|")[1])}
    fields = {name.upper() for name in (*Settings.model_fields, *BrokerSettings.model_fields)}
    assert fields - listed == set(), "settings missing from the README's table"
    assert listed - fields == set(), "names in the README's table that are no settings"

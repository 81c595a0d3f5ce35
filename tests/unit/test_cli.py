"""The CLI as people meet it: errors in one line, the version, tail's output, the settings'
defaults and their table in the README."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest

from streams.cli.io import envelope, readable
from streams.cli.main import _http_error, _setting, main
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
    assert _setting(("response_codes", "success"), 5) == " SMI_RESPONSE_CODES (success)=5"


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


@pytest.mark.parametrize(("variables", "said"), [
    ({"SMI_RESPONSE_CODES": "{bad"}, "bad setting SMI_RESPONSE_CODES: not valid JSON"),
    ({"SMI_BROKER": "127.0.0.1:99999"}, "bad setting SMI_BROKER=127.0.0.1:99999: "),
    ({"SMI_BROKER": "127.0.0.1:notaport"}, "bad setting SMI_BROKER=127.0.0.1:notaport: "),
    ({"SMI_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SMI_SASL_USERNAME": "smi"},
     "bad setting: SMI_SECURITY_PROTOCOL=SASL_PLAINTEXT needs SMI_SASL_USERNAME and "
     "SMI_SASL_PASSWORD_FILE"),
    ({"SMI_SECURITY_PROTOCOL": "SSL", "SMI_SSL_CAFILE": "/nonexistent.pem"},
     "bad setting SMI_SSL_CAFILE=/nonexistent.pem: "),
    ({"SMI_WEB_PORT": "99999"}, "bad setting SMI_WEB_PORT=99999: "),
    ({"SMI_LOG_LEVEL": "verbose"}, "bad setting SMI_LOG_LEVEL=verbose: choose one of debug"),
    ({"SMI_STORE": "redis://"}, "bad setting SMI_STORE=redis://: choose memory:// or rocksdb://"),
    ({"SMI_STORE": "rocksdb"}, "bad setting SMI_STORE=rocksdb: choose memory:// or rocksdb://"),
])
def test_a_bad_setting_is_one_line_before_anything_starts(
        variables: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main(["topics"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"smi: {said}"), err
    assert len(err.splitlines()) == 1, err


def test_settings_take_a_level_in_any_case_and_an_age_in_seconds() -> None:
    settings = Settings(log_level="WARNING", pending_max_age="1.5", broker="kafka-1,[::1]:9093")
    assert settings.log_level == "warning"
    assert settings.pending_max_age.total_seconds() == 1.5


def test_the_local_brokers_commands_need_no_worker_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # a worker setting that would be refused must not keep anyone from stopping the broker
    monkeypatch.setenv("SMI_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["kafka", "status", "--port", "29999"]) == 3  # answered: nothing runs there
    assert main(["kafka", "down", "--port", "29999"]) == 0
    assert "bad setting" not in capsys.readouterr().err
    assert main(["topics"]) == 2  # the worker's own commands still refuse it


def test_status_and_down_tell_a_broker_started_elsewhere_from_none(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))  # no broker was started from here
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        assert main(["kafka", "status", "--port", port]) == 3
        assert f"answers: not a broker started under {tmp_path / 'kafka'}" in (
            capsys.readouterr().out)
        assert main(["kafka", "down", "--port", port, "--purge"]) == 1  # not ours to stop
        said = capsys.readouterr()
        assert said.out == "stopped 0 kafka node(s) and deleted their data\n"
        assert f"smi: 127.0.0.1:{port} still answers: not a broker started under" in said.err
    assert main(["kafka", "status", "--port", port]) == 3
    assert f"{port} stopped" in capsys.readouterr().out
    assert main(["kafka", "down", "--port", port]) == 0


@pytest.mark.parametrize("command", [["kafka", "up", "--port", "99999"],
                                     ["kafka", "up", "--nodes", "2"]])
def test_the_local_broker_refuses_what_it_cannot_run(
        command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(command)
    assert done.value.code == 2
    assert command[-1] in capsys.readouterr().err


def test_a_missing_file_and_an_unknown_policy_are_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["produce", "duis.service-requests", str(tmp_path / "missing.jsonl")]) == 1
    assert main(["simulate", "--policy", "bogus", "--out", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"smi: [Errno 2] No such file or directory: '{tmp_path}/missing.jsonl'",
                     "smi: unknown policy 'bogus': choose from baseline, sr11.2, retry, mp105"]


def test_a_refusal_without_the_workers_words_gives_its_status() -> None:
    import io
    import urllib.error

    said = urllib.error.HTTPError("http://w/devices/X", 401, "Unauthorized", {},  # type: ignore[arg-type]
                                  io.BytesIO(b'{"error": "a token is required"}'))
    assert _http_error(said) == "a token is required"
    other = urllib.error.HTTPError("http://w/devices/A/B", 404, "Not Found", {},  # type: ignore[arg-type]
                                   io.BytesIO(b"<html>404</html>"))
    assert _http_error(other) == "404 Not Found from http://w/devices/A/B"


def test_a_password_file_that_is_not_utf8_is_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    password = tmp_path / "password"
    password.write_bytes(b"\xff\xfes\x00e\x00c\x00")  # UTF-16, as some editors save it
    password.chmod(0o600)
    for name, value in {"SMI_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SMI_SASL_USERNAME": "smi",
                        "SMI_SASL_PASSWORD_FILE": str(password), "SMI_BROKER": "127.0.0.1:1",
                        "SMI_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    assert main(["topics"]) == 1
    assert capsys.readouterr().err == (f"smi: SMI_SASL_PASSWORD_FILE={password} is not UTF-8 "
                                       "text: invalid start byte\n")


def test_smi_device_asks_for_the_stored_id_and_refuses_what_is_not_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import urllib.error
    import urllib.request

    asked: list[str] = []

    def urlopen(request: urllib.request.Request, timeout: float) -> None:
        asked.append(request.full_url)
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {},  # type: ignore[arg-type]
                                     io.BytesIO(b'{"error": "no device A B on the SMI"}'))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["device", "00-db-12-34-56-78-90-a0", "--url", "http://w"]) == 1
    assert asked == ["http://w/devices/00-DB-12-34-56-78-90-A0"]  # the stored case
    assert capsys.readouterr().err == "smi: no device A B on the SMI\n"  # the worker's words
    assert main(["device", "a b", "--url", "http://w"]) == 1  # not asked at all
    assert len(asked) == 1
    assert capsys.readouterr().err == (
        "smi: a b is not a device ID: an EUI-64 such as 00-DB-12-34-56-78-90-A0\n")


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:notaport", "worker"])
def test_smi_device_names_a_malformed_url_in_one_line(
        url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["device", "00-DB-12-34-56-78-90-A0", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"smi: {url} is not a worker's web address: "), err
    assert len(err.splitlines()) == 1, err


def test_a_setting_name_with_a_typo_is_pointed_out(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """SMI_PROCESING_GUARANTEE would leave at_least_once on without a word."""
    monkeypatch.setenv("SMI_PROCESING_GUARANTEE", "exactly_once")
    monkeypatch.setenv("SMI_TEST_SOMETHING", "1")  # a tool's own variable: not a typo
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["device", "00-DB-12-34-56-78-90-A0", "--url", "worker"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "smi: warning: SMI_PROCESING_GUARANTEE is not a setting (did you mean "
        "SMI_PROCESSING_GUARANTEE?)")


def test_smi_device_asks_the_worker_where_it_listens(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import urllib.request

    asked: list[str] = []

    def urlopen(request: urllib.request.Request, timeout: float) -> None:
        asked.append(request.full_url)
        raise OSError("refused")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    for host in ("::1", "127.0.0.2"):
        monkeypatch.setenv("SMI_WEB_HOST", host)
        assert main(["device", "00-DB-12-34-56-78-90-A0"]) == 1
    assert asked == ["http://[::1]:6066/devices/00-DB-12-34-56-78-90-A0",
                     "http://127.0.0.2:6066/devices/00-DB-12-34-56-78-90-A0"]


def test_tail_does_not_pass_a_producers_control_characters_to_the_terminal() -> None:
    line = readable("t", 0, 1, b"k\x1b[2J", orjson.dumps({"device_id": "\x1b]0;x\x07 \u009b"}))
    assert line == "t[0]@1 k\\x1b[2J device_id=\\x1b]0;x\\x07 \\x9b"


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SMI_API_TOKEN", "t\u20acken", "must be printable ASCII without spaces"),
    ("SMI_API_TOKEN", "two words", "must be printable ASCII without spaces"),
    ("SMI_PARTITIONS", "3000000000", "less than or equal to 2147483647"),
    ("SMI_REPLICATION_FACTOR", "40000", "less than or equal to 32767"),
    ("SMI_PENDING_MAX_AGE", "1h", "an ISO 8601 duration (P7D, PT12H) or seconds"),
    ("SMI_SUSPENDED_EXCEPTIONS", '["11.1", "11"]', "'11' is not a Service Reference Variant"),
    ("SMI_RESPONSE_CODES", '{"device-suspendd": "E9"}', "device-suspendd: not an outcome"),
    ("SMI_RESPONSE_CODES", '{"device-suspended": 5}', "SMI_RESPONSE_CODES (device-suspended)=5"),
])
def test_a_setting_that_cannot_work_is_one_line(
        name: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    assert main(["topics"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and says in err and name in err, err


def test_the_local_brokers_port_is_a_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMI_KAFKA_PORT", "70000")
    assert main(["kafka", "status"]) == 2
    assert "SMI_KAFKA_PORT=70000" in capsys.readouterr().err


def test_a_debug_traceback_of_a_bad_setting_shows_no_secret(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_LOG_LEVEL", "debug")
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMI_SASL_PASSWORD", "Xy9secret")
    monkeypatch.setenv("SMI_SSL_KEYFILE", str(tmp_path / "missing.pem"))
    assert main(["topics"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "Xy9secret" not in err


def test_more_in_sync_replicas_than_replicas_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMI_MIN_INSYNC_REPLICAS", "2")
    assert main(["topics"]) == 2
    assert capsys.readouterr().err == (
        "smi: bad setting: SMI_MIN_INSYNC_REPLICAS=2 is more than SMI_REPLICATION_FACTOR=1: "
        "the topics made would refuse every write\n")


def test_a_broker_refusal_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A group or topic the user has no right to: the broker's answer, not a traceback."""
    from aiokafka.errors import GroupAuthorizationFailedError

    async def refused(settings: Settings) -> None:
        raise GroupAuthorizationFailedError()

    monkeypatch.setattr("streams.tools.verify.verify", refused)
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["verify"]) == 2
    assert capsys.readouterr().err == (
        "smi: the broker refused: GroupAuthorizationFailedError: [Error 30] "
        "GroupAuthorizationFailedError\n")


def test_a_reader_that_stops_early_ends_smi_quietly(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`smi device ... | head`: no "Broken pipe" error line, the status of a SIGPIPE."""
    import streams.cli.main as cli

    def closed(*_: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_device", closed)
    monkeypatch.setenv("SMI_DATA_DIR", str(tmp_path))
    assert main(["device", "00-DB-12-34-56-78-90-A0"]) == 141
    assert capsys.readouterr().err == ""


def test_tail_shows_values_as_json_writes_them() -> None:
    line = readable("t", 0, 1, b"k", orjson.dumps({"retry": False, "source": {"id": None}}))
    assert line == "t[0]@1 k retry=false source={id=null}"

"""Secrets and TLS without a broker: the SASL password from a private file, the local
broker's files and commands that never show it, and a client certificate for mTLS."""

from __future__ import annotations

import base64
import hashlib
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.broker import local
from streams.cli.main import main
from streams.errors import ConfigError
from streams.settings import BrokerSettings, Settings
from tests import pki

PASSWORD = 'p@ss, "word"\\ ]ü'  # every character that would end a quoted or listed value


def password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "sasl-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(mode)
    return path


def test_the_password_comes_from_a_private_file(tmp_path: Path) -> None:
    settings = Settings(security_protocol="SASL_PLAINTEXT", sasl_username="smi",
                        sasl_password_file=password_file(tmp_path))
    assert settings.kafka_client_options()["sasl_plain_password"] == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_password_file_others_may_read_is_refused_in_one_line(
        tmp_path: Path, mode: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = password_file(tmp_path, mode)
    with pytest.raises(ValidationError, match="chmod 600"):
        Settings(sasl_password_file=path)
    monkeypatch.setenv("SMI_SASL_PASSWORD_FILE", str(path))
    assert main(["topics"]) == 2
    error = capsys.readouterr().err
    assert error == (f"smi: bad setting SMI_SASL_PASSWORD_FILE={path}: {path} is readable by "
                     f"others (mode {mode:04o}): chmod 600 {path}\n")


def test_a_password_and_a_password_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        Settings(sasl_password="x", sasl_password_file=password_file(tmp_path))  # type: ignore[arg-type]


def scram_layout(tmp_path: Path) -> tuple[Settings, local.Cluster, local.Node]:
    settings = Settings(sasl_username="smi", sasl_password_file=password_file(tmp_path))
    layout = local.cluster(BrokerSettings(kafka_home=tmp_path / "kafka"), 1, 29899)
    layout.home.mkdir(parents=True)
    (layout.home / "security").write_text("SASL_PLAINTEXT")
    layout.nodes[0].home.mkdir(parents=True)
    return settings, layout, layout.nodes[0]


def test_formatting_gives_java_the_credential_in_a_private_file_not_argv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, layout, node = scram_layout(tmp_path)
    seen: list[tuple[list[str], str, int]] = []

    def run(command: list[str]) -> None:
        argfile = Path(command[-1].removeprefix("@"))
        seen.append((command, argfile.read_text(), argfile.stat().st_mode & 0o777))

    monkeypatch.setattr(local, "_run", run)
    local._format("java", "libs/*", node, node.home / "server.properties", "-id",
                  local._scram_user(layout, settings))
    (command, arguments, mode), = seen
    assert command == ["java", f"@{node.home / 'format.args'}"] and mode == 0o600
    assert not (node.home / "format.args").exists()  # removed once used
    assert PASSWORD not in arguments and '"--cluster-id=-id"' in arguments
    scram = next(a for a in arguments.splitlines() if "--add-scram" in a).strip('"')
    fields = dict(f.split("=", 1) for f in scram.split("[", 1)[1].rstrip("]").split(","))
    salted = hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(), base64.b64decode(fields["salt"]),
                                 int(fields["iterations"]))
    assert fields["name"] == "smi" and base64.b64decode(fields["saltedpassword"]) == salted


def test_the_broker_properties_quote_the_password_and_only_their_owner_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, layout, node = scram_layout(tmp_path)
    monkeypatch.setattr(local, "_run", lambda command: None)
    started: list[list[str]] = []

    class Process:
        pid = 0

        def __init__(self, command: list[str], **kwargs: object) -> None:
            started.append(command)

    monkeypatch.setattr(local.subprocess, "Popen", Process)
    local._start(node, layout, "id", tmp_path, BrokerSettings(kafka_home=tmp_path / "kafka"),
                 settings)
    config = node.home / "server.properties"
    assert config.stat().st_mode & 0o777 == 0o600
    assert not any(PASSWORD in part for part in started[0])
    jaas = next(line for line in config.read_text().splitlines() if "jaas.config" in line)
    # properties: \ doubled, non-ASCII as \uXXXX; then JAAS: " and \ escaped in quotes
    assert jaas.endswith(r'password="p@ss, \\"word\\"\\\\ ]\u00fc";')
    assert config.read_text().isascii()


def test_a_client_certificate_and_key_make_an_mtls_context(tmp_path: Path) -> None:
    made = pki.make(tmp_path)
    settings = Settings(security_protocol="SSL", ssl_cafile=made.ca,
                        ssl_certfile=made.client_cert, ssl_keyfile=made.client_key)
    context = settings.kafka_client_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(ValidationError, match="SMI_SSL_CERTFILE"):
        Settings(ssl_keyfile=made.client_key)


def test_tls_needs_the_brokers_certificate_the_clients_ca_and_a_client_certificate(
        tmp_path: Path) -> None:
    made = pki.make(tmp_path / "pki")
    with_certificate = BrokerSettings(kafka_home=tmp_path, kafka_ssl_certfile=made.broker_cert,
                                      kafka_ssl_keyfile=made.broker_key)
    for broker_side, settings, missing in [
            (BrokerSettings(kafka_home=tmp_path), Settings(), "SMI_KAFKA_SSL_CERTFILE"),
            (with_certificate, Settings(ssl_cafile=made.ca), "SMI_SSL_CERTFILE")]:
        with pytest.raises(local.BrokerError, match=missing):
            local.up(broker_side, settings, port=29898, tls=True)
    assert not (tmp_path / "cluster-29898").exists()  # refused before anything is written


def test_a_file_that_is_no_certificate_is_named_in_one_line(tmp_path: Path) -> None:
    made = pki.make(tmp_path)
    settings = Settings(security_protocol="SSL", ssl_cafile=made.client_key)  # a key, no CA
    with pytest.raises(ConfigError, match=r"SMI_SSL_CAFILE.*cannot be used"):
        settings.kafka_client_options()


def test_a_node_that_exited_before_its_log_began_points_at_the_jvms_output(
        tmp_path: Path) -> None:
    node = local.Node(node_id=1, port=1, controller_port=2, home=tmp_path)
    assert node.exit_log == str(tmp_path / "server.log")
    (tmp_path / "stdout.log").write_text("Invalid maximum heap size: -Xmxlots\n")
    assert node.exit_log == f"{tmp_path / 'server.log'} and {tmp_path / 'stdout.log'}"

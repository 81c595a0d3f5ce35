"""A broker that wants SASL/SCRAM-SHA-512: the worker and the CLI log in with the password of
a private file, a wrong password is refused in words, and no password is ever printed or on
a command line."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams import broker
from streams.settings import BrokerSettings, Settings
from tests.integration.harness import SMI, Worker, rejection_reasons

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("SMI_TEST_SCRAM_PORT", "29392"))
DEVICE, SUPPLIER = "00-DB-12-34-56-78-99-02", "90-B3-D5-1F-30-01-00-00"


@pytest.fixture(scope="module")
def scram(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    # what would end a quoted JAAS value, a property, or an --add-scram list, all in one
    password = f'{secrets.token_urlsafe(12)}, "q"\\ ]\u00fc'
    path = tmp_path_factory.mktemp("scram") / "password"
    path.write_text(password)
    path.chmod(0o600)
    env = {"SMI_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SMI_SASL_MECHANISM": "SCRAM-SHA-512",
           "SMI_SASL_USERNAME": "smi", "SMI_SASL_PASSWORD_FILE": str(path)}
    settings = Settings(sasl_username="smi", sasl_password_file=path)
    broker.down(BrokerSettings(), port=PORT, purge=True)
    cluster = broker.up(BrokerSettings(), settings, port=PORT, scram=True)
    try:
        yield {**env, "SMI_BROKER": cluster.bootstrap}
    finally:
        broker.down(BrokerSettings(), port=PORT, purge=True)


def password(scram: dict[str, str]) -> str:
    return Path(scram["SMI_SASL_PASSWORD_FILE"]).read_text()


def test_no_command_line_holds_the_password(scram: dict[str, str]) -> None:
    (node, pid), = broker.status(BrokerSettings(), port=PORT)
    assert pid is not None
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "kafka.Kafka" in command_line and password(scram) not in command_line
    assert (node.home / "server.properties").stat().st_mode & 0o777 == 0o600


def test_worker_and_cli_log_in_with_scram(
    scram: dict[str, str], prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    worker = worker_factory(prefix, env=scram, bootstrap=scram["SMI_BROKER"])
    request = (f'{{"request_id": "{SUPPLIER}:{DEVICE}:1", "sr": "11.2", '
               f'"originator": "{SUPPLIER}", "device_id": "{DEVICE}", '
               f'"at": "2026-11-24T08:00:00Z"}}\n')
    env = {**worker.settings_env(), **scram}
    sent = subprocess.run([SMI, "produce", "duis.service-requests"], input=request, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert sent.returncode == 0, sent.stderr
    settings = Settings(broker=scram["SMI_BROKER"], topic_prefix=prefix,
                        security_protocol="SASL_PLAINTEXT", sasl_username="smi",
                        sasl_password_file=Path(scram["SMI_SASL_PASSWORD_FILE"]))

    assert rejection_reasons(worker, settings) == ["unknown-device"]
    assert password(scram) not in worker.tail(2000)
    assert password(scram) not in sent.stdout + sent.stderr


def test_a_wrong_password_is_refused_in_words(scram: dict[str, str], prefix: str) -> None:
    env = {**os.environ, **scram, "SMI_SASL_PASSWORD": "not-the-password",
           "SMI_TOPIC_PREFIX": prefix}
    del env["SMI_SASL_PASSWORD_FILE"]
    refused = subprocess.run([SMI, "topics"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert refused.returncode != 0
    assert "not-the-password" not in refused.stdout + refused.stderr
    assert "authentication" in (refused.stdout + refused.stderr).lower()

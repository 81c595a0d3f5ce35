"""`smi kafka up --tls`: the worker and the CLI over TLS with a client certificate (mTLS),
and a client that does not trust the broker's CA, or shows no certificate, refused."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams import broker
from streams.settings import BrokerSettings, Settings
from tests import pki
from tests.integration.harness import SMI, Worker, rejection_reasons

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("SMI_TEST_TLS_PORT", "29394"))
DEVICE, SUPPLIER = "00-DB-12-34-56-78-99-03", "90-B3-D5-1F-30-01-00-00"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls(made: pki.Pki) -> Iterator[dict[str, str]]:
    env = {"SMI_SECURITY_PROTOCOL": "SSL", "SMI_SSL_CAFILE": str(made.ca),
           "SMI_SSL_CERTFILE": str(made.client_cert), "SMI_SSL_KEYFILE": str(made.client_key)}
    local = BrokerSettings(kafka_ssl_certfile=made.broker_cert, kafka_ssl_keyfile=made.broker_key)
    settings = Settings(ssl_cafile=made.ca, ssl_certfile=made.client_cert,
                        ssl_keyfile=made.client_key)
    broker.down(local, port=PORT, purge=True)
    cluster = broker.up(local, settings, port=PORT, tls=True)
    try:
        yield {**env, "SMI_BROKER": cluster.bootstrap}
    finally:
        broker.down(local, port=PORT, purge=True)


def test_worker_and_cli_connect_over_tls(
    tls: dict[str, str], prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    worker = worker_factory(prefix, env=tls, bootstrap=tls["SMI_BROKER"])
    request = (f'{{"request_id": "{SUPPLIER}:{DEVICE}:1", "sr": "11.2", '
               f'"originator": "{SUPPLIER}", "device_id": "{DEVICE}", '
               f'"at": "2026-11-24T08:00:00Z"}}\n')
    sent = subprocess.run([SMI, "produce", "duis.service-requests"], input=request,
                          env={**worker.settings_env(), **tls}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert sent.returncode == 0, sent.stderr
    settings = Settings(broker=tls["SMI_BROKER"], topic_prefix=prefix, security_protocol="SSL",
                        ssl_cafile=Path(tls["SMI_SSL_CAFILE"]),
                        ssl_certfile=Path(tls["SMI_SSL_CERTFILE"]),
                        ssl_keyfile=Path(tls["SMI_SSL_KEYFILE"]))

    assert rejection_reasons(worker, settings) == ["unknown-device"]


@pytest.mark.parametrize("change", ["another CA", "no client certificate"])
def test_a_client_the_broker_or_it_cannot_trust_is_refused(
        tls: dict[str, str], made: pki.Pki, prefix: str, change: str) -> None:
    env = {**os.environ, **tls, "SMI_TOPIC_PREFIX": prefix}
    if change == "another CA":
        env["SMI_SSL_CAFILE"] = str(made.other_ca)
    else:
        del env["SMI_SSL_CERTFILE"], env["SMI_SSL_KEYFILE"]
    refused = subprocess.run([SMI, "topics"], env=env, capture_output=True, text=True,
                             timeout=180, check=False)
    assert refused.returncode == 2, refused.stdout  # as for any broker it cannot reach
    said = refused.stderr
    assert "cannot be reached" in said
    # no certificate: the broker closes the handshake, which the client sees as a closed link
    assert ("CERTIFICATE_VERIFY_FAILED" if change == "another CA" else "closed") in said


def test_scram_over_tls(made: pki.Pki, prefix: str, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret, \"quoted\"")
    password.chmod(0o600)
    env = {"SMI_SECURITY_PROTOCOL": "SASL_SSL", "SMI_SASL_USERNAME": "smi",
           "SMI_SASL_PASSWORD_FILE": str(password), "SMI_SSL_CAFILE": str(made.ca),
           "SMI_SSL_CERTFILE": str(made.client_cert), "SMI_SSL_KEYFILE": str(made.client_key),
           "SMI_KAFKA_SSL_CERTFILE": str(made.broker_cert),
           "SMI_KAFKA_SSL_KEYFILE": str(made.broker_key), "SMI_TOPIC_PREFIX": prefix}
    port = str(PORT + 2)
    run = {**os.environ, **env}
    try:
        up = subprocess.run([SMI, "kafka", "up", "--scram", "--tls", "--port", port], env=run,
                            capture_output=True, text=True, timeout=180, check=False)
        assert up.returncode == 0, up.stderr
        run["SMI_BROKER"] = f"127.0.0.1:{port}"
        made_topics = subprocess.run([SMI, "topics"], env=run, capture_output=True, text=True,
                                     timeout=120, check=False)
        assert made_topics.returncode == 0, made_topics.stderr
    finally:
        subprocess.run([SMI, "kafka", "down", "--purge", "--port", port], env=run,
                       capture_output=True, timeout=120, check=False)

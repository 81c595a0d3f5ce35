"""A throwaway CA and certificates signed by it, made with the machine's openssl, for TLS
tests: the broker's (for 127.0.0.1 and localhost) and a client's."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting only it must fail


def make(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _self_signed(folder, "ca")
    other = _self_signed(folder, "other-ca")
    extensions = folder / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    broker = _signed(folder, "broker", ca, extensions)
    client = _signed(folder, "client", ca, None)
    return Pki(ca, broker, _key(folder, "broker"), client, _key(folder, "client"), other)


def _key(folder: Path, name: str) -> Path:
    return folder / f"{name}.key"


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True)


def _new_key(folder: Path, name: str) -> Path:
    key = _key(folder, name)  # PKCS#8, unencrypted: what Kafka's PEM keystore reads
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
             str(key))
    os.chmod(key, 0o600)
    return key


def _self_signed(folder: Path, name: str) -> Path:
    cert = folder / f"{name}.pem"
    _openssl("req", "-x509", "-new", "-key", str(_new_key(folder, name)), "-days", "2",
             "-subj", f"/CN=smi-test-{name}", "-out", str(cert))
    return cert


def _signed(folder: Path, name: str, ca: Path, extensions: Path | None) -> Path:
    request, cert = folder / f"{name}.csr", folder / f"{name}.pem"
    _openssl("req", "-new", "-key", str(_new_key(folder, name)), "-subj",
             f"/CN=smi-test-{name}", "-out", str(request))
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey",
             str(_key(folder, "ca")), "-CAcreateserial", "-days", "2", "-out", str(cert),
             *(["-extfile", str(extensions)] if extensions else []))
    return cert

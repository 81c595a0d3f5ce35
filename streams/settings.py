"""All settings, in one frozen object read from ``SMI_*`` environment variables.

Every field maps to ``SMI_<FIELD>`` (``broker`` is ``SMI_BROKER``); lists and maps take JSON
(``SMI_SUSPENDED_EXCEPTIONS='["11.1","11.3"]'``). Facts docs/domain.md marks *unconfirmed* live
here as settings, not constants.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import ssl
import stat
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.models import SR_PATTERN
from streams.core.policy import Policy
from streams.errors import ConfigError

# Installed anywhere, the package keeps no data beside itself: state goes under the directory
# smi runs in, unless SMI_DATA_DIR says where.
DEFAULT_DATA_DIR = Path(".data")

_POLICY = Policy()  # the rules' defaults
_DURATION = TypeAdapter(timedelta)
STORES = ("memory", "rocksdb")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

DEFAULT_RESPONSE_CODES = {
    # The real DUIS response codes are not public here: these are placeholders to override.
    "success": "I0",
    "device-suspended": "E11",
    "not-authorised": "E2",
    "out-of-scope": "E12",
    "unknown-device": "E4",
    "invalid-request": "E1",
    "device-terminal": "E13",
}


class Settings(BaseSettings):
    # hide_input_in_errors: a debug traceback would show every setting given, secrets too
    model_config = SettingsConfigDict(env_prefix="SMI_", frozen=True, extra="ignore",
                                      hide_input_in_errors=True)

    # Kafka connection
    broker: str = Field("127.0.0.1:9092", description="bootstrap servers, comma-separated")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # a file keeps the password out of the environment other processes of the user can read
    sasl_password_file: Path | None = Field(None, description="file (mode 0600) holding "
                                            "the SASL password")
    ssl_cafile: Path | None = Field(None, description="CA certificate(s) the broker's must "
                                    "chain to, PEM")
    ssl_certfile: Path | None = Field(None, description="client certificate for mTLS, PEM")
    ssl_keyfile: Path | None = Field(None, description="its private key, PEM")
    ssl_key_password: SecretStr | None = Field(None, description="the key's password")

    # The application
    app_id: str = Field("smi-streams", description="faust app id, also the consumer group")
    topic_prefix: str = Field("", description="put before every contract topic name")
    # the bounds are the protocol's (int32, int16): above them a request cannot be written
    partitions: int = Field(8, ge=1, le=2**31 - 1,
                            description="partitions of every topic this app creates")
    replication_factor: int = Field(1, ge=1, le=2**15 - 1)
    min_insync_replicas: int = Field(1, ge=1)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # outputs wait for the commit under exactly_once, and a long interval is latency at the
    # same throughput (docs/performance.md)
    commit_interval: float = Field(0.1, gt=0, description="seconds between offset commits")
    store: str = Field("memory://", description="table store: memory:// or rocksdb://")
    data_dir: Path = Field(default_factory=lambda: DEFAULT_DATA_DIR.resolve(),
                           description="tables, worker state and the local broker")
    # RocksDB keeps one database per partition, each with these buffers: faust's defaults
    # (64 MiB x 3 write buffers, a 2 GiB block cache) let a worker grow by gigabytes.
    rocksdb_write_buffer_mib: int = Field(4, ge=1, description="per partition, two of them")
    rocksdb_block_cache_mib: int = Field(8, ge=1, description="per partition")
    # decoded records of recently decided devices (streams.tables.RecentRecords): ~2 KiB each
    record_cache_size: int = Field(10_000, ge=0, description="records kept decoded; 0: none")
    batch_size: int = Field(1000, ge=1, description="events an agent decides at a time")
    batch_seconds: float = Field(0.01, gt=0, description="longest wait to fill a batch")
    # aiokafka sends a broker one fetch at a time; one for just the partitions without data
    # waits this long at the broker while the others' new records wait behind it (faust's
    # 1.5 s stalled every partition behind an empty one)
    fetch_max_wait: float = Field(0.05, ge=0.001, le=30,
                                  description="seconds a fetch may wait at the broker for data")
    # streams/order.py: how long a partition group holds back for a partition that has records
    # on the broker but none fetched yet (Kafka Streams' max.task.idle.ms); past it, the
    # group decides what it has, and the order against that partition is no longer kept
    max_task_idle: float = Field(5.0, ge=0, le=300,
                                 description="seconds a group waits for a lagging partition")
    # aiokafka sends one record batch per partition in each request to a broker, so a
    # commit's changelog records for a partition leave one batch per round trip: small
    # batches (faust's 16 KiB) make a commit many round trips long. Keep it under the topics'
    # max.message.bytes (1 MiB unless the broker says otherwise).
    producer_batch_kib: int = Field(512, ge=16, le=1024,
                                    description="largest record batch the worker sends, KiB")
    # how long an output may take to reach the broker before the worker gives up on it and
    # stops (faust's 1,200 s hid a lost broker for 20 minutes); Kafka's own default is 120 s
    delivery_timeout_seconds: float = Field(120.0, ge=1, le=1800, description="longest wait "
                                            "for the broker to take an output")
    # exactly_once: how long the broker lets a transaction stay open before it aborts it and
    # fences the worker; at most the broker's transaction.max.timeout.ms (15 minutes)
    transaction_timeout_seconds: float = Field(60.0, ge=1, le=900, description="longest a "
                                               "transaction may stay open")
    # how long the group waits for a silent worker before it gives its partitions to others;
    # within the broker's group.min/max.session.timeout.ms (6 s and 30 min by default)
    session_timeout_seconds: float = Field(60.0, ge=6, le=1800, description="silence after "
                                           "which the group moves a worker's partitions")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    api_token: SecretStr | None = Field(None, description="bearer token the web API requires")
    api_insecure: bool = Field(False, description="serve the web API on a host other machines "
                               "reach without SMI_API_TOKEN")
    log_level: str = Field("info", description="debug, info, warning, error or critical")

    # Policy (docs/domain.md, "Policies") and the unconfirmed facts
    # the defaults are Policy's own
    sr11_2_when_suspended: bool = _POLICY.sr11_2_when_suspended
    sr11_3_retry_updates_smi: bool = _POLICY.sr11_3_retry_updates_smi
    secmp0007: bool = _POLICY.secmp0007
    suspended_exceptions: tuple[str, ...] = tuple(sorted(_POLICY.suspended_exceptions))
    response_codes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_RESPONSE_CODES))
    pending_requests_per_device: int = Field(
        _POLICY.pending_limit, ge=1,
        description="SR11.2s, and SR11.3s, kept awaiting their response, per device")
    pending_max_age: timedelta = Field(timedelta(seconds=_POLICY.pending_max_age),
                                       gt=timedelta(0), description="age past which an SR11.x "
                                       "is no longer awaited (ISO 8601, P7D, or seconds)")

    @field_validator("pending_max_age", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # pydantic reads ISO 8601 durations from text, and seconds only from numbers
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
            for text in (value.strip(), value.strip().upper()):  # pt12h as PT12H
                try:
                    return _DURATION.validate_python(text)
                except ValidationError:
                    continue
            raise ValueError("must be an ISO 8601 duration (P7D, PT12H) or seconds (604800)")
        return value

    @field_validator("suspended_exceptions")
    @classmethod
    def _service_references(cls, srs: tuple[str, ...]) -> tuple[str, ...]:
        for sr in srs:
            if not re.fullmatch(SR_PATTERN, sr):
                raise ValueError(f"{sr!r} is not a Service Reference Variant such as '11.3' "
                                 "or '8.2'")
        return srs

    @field_validator("response_codes")
    @classmethod
    def _reasons(cls, codes: dict[str, str]) -> dict[str, str]:
        if unknown := sorted(set(codes) - set(DEFAULT_RESPONSE_CODES)):
            raise ValueError(f"{', '.join(unknown)}: not an outcome with a response code; "
                             f"those are {', '.join(DEFAULT_RESPONSE_CODES)}")
        return codes

    @field_validator("broker")
    @classmethod
    def _addresses(cls, broker: str) -> str:
        # a bad port would otherwise surface as a traceback from deep in the client
        for address in broker.split(","):
            check_address(address.strip())
        return broker

    @field_validator("store")
    @classmethod
    def _known_store(cls, store: str) -> str:
        scheme, separator, _ = store.partition("://")
        if not separator or scheme not in STORES:
            raise ValueError("choose memory:// or rocksdb://")
        return store

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.lower() not in LOG_LEVELS:
            raise ValueError(f"choose one of {', '.join(LOG_LEVELS)}")
        return level.lower()

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a file this user can read")
        return path

    @field_validator("sasl_password_file")
    @classmethod
    def _private(cls, path: Path | None) -> Path | None:
        if path is not None:
            check_private(path)
        return path

    @model_validator(mode="after")
    def _one_password(self) -> Settings:
        if self.sasl_password and self.sasl_password_file:
            raise ValueError("set SMI_SASL_PASSWORD_FILE or SMI_SASL_PASSWORD, not both")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("SMI_SSL_KEYFILE needs SMI_SSL_CERTFILE, the certificate it signs")
        if self.security_protocol.startswith("SASL") and not (
                self.sasl_username and (self.sasl_password or self.sasl_password_file)):
            raise ValueError(f"SMI_SECURITY_PROTOCOL={self.security_protocol} needs "
                             "SMI_SASL_USERNAME and SMI_SASL_PASSWORD_FILE (or SMI_SASL_PASSWORD)")
        return self

    @model_validator(mode="after")
    def _order_kept(self) -> Settings:
        # under exactly_once what a partition group forwards, and how far it has read, reach
        # the other groups only when its transaction commits: a wait shorter than two commits
        # would run out every time, and the order across groups would be lost
        if (self.processing_guarantee == "exactly_once"
                and 0 < self.max_task_idle < 2 * self.commit_interval):
            raise ValueError(
                f"SMI_MAX_TASK_IDLE={self.max_task_idle:g} must be at least twice "
                f"SMI_COMMIT_INTERVAL={self.commit_interval:g} under exactly_once: partition "
                "groups hear from each other only as transactions commit (0 waits for nothing)")
        return self

    @field_validator("api_token")
    @classmethod
    def _token_typeable(cls, value: SecretStr | None) -> SecretStr | None:
        # it travels in an HTTP header, which carries ASCII only, and a space would end it
        if value is not None and not all(
                "!" <= c <= "~" for c in value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces (it is sent in an HTTP "
                             "header)")
        return value

    @model_validator(mode="after")
    def _writable(self) -> Settings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"SMI_MIN_INSYNC_REPLICAS={self.min_insync_replicas} is more than "
                f"SMI_REPLICATION_FACTOR={self.replication_factor}: the topics made would "
                "refuse every write")
        return self

    @model_validator(mode="after")
    def _api_guarded(self) -> Settings:
        if not (self.api_token or self.api_insecure or is_loopback(self.web_host)):
            raise ValueError(
                f"SMI_WEB_HOST={self.web_host} lets other machines reach the web API: set "
                "SMI_API_TOKEN (or SMI_API_INSECURE=true to serve it without one)")
        return self

    @property
    def policy(self) -> Policy:
        return Policy(
            sr11_2_when_suspended=self.sr11_2_when_suspended,
            sr11_3_retry_updates_smi=self.sr11_3_retry_updates_smi,
            secmp0007=self.secmp0007,
            suspended_exceptions=frozenset(self.suspended_exceptions),
            response_codes=dict(self.response_codes),
            pending_limit=self.pending_requests_per_device,
            pending_max_age=self.pending_max_age.total_seconds(),
        )

    def topic(self, name: str) -> str:
        """The real topic name for a contract topic name, with the prefix."""
        return f"{self.topic_prefix}{name}"

    def sasl_secret(self) -> SecretStr | None:
        """The SASL password, from SMI_SASL_PASSWORD_FILE (read when asked, so a replaced
        file is seen) or SMI_SASL_PASSWORD."""
        if self.sasl_password_file is None:
            return self.sasl_password
        path = self.sasl_password_file
        try:
            check_private(path)
            return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as exc:  # e.g. saved as UTF-16 by an editor
            raise ConfigError(f"SMI_SASL_PASSWORD_FILE={path} is not UTF-8 text: "
                              f"{exc.reason}") from None
        except (ValueError, OSError) as exc:  # replaced or opened up since it was checked
            raise ConfigError(f"SMI_SASL_PASSWORD_FILE: {exc}") from None

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options for aiokafka clients; the password is only read here."""
        options: dict[str, object] = {
            "bootstrap_servers": self.broker,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            password = self.sasl_secret()
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = password.get_secret_value() if password else None
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = self.ssl_context()
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts SMI_SSL_CAFILE (else the system's CAs); shows SMI_SSL_CERTFILE for mTLS."""
        from aiokafka.helpers import create_ssl_context

        key_password = self.ssl_key_password
        try:
            return create_ssl_context(
                cafile=_text(self.ssl_cafile), certfile=_text(self.ssl_certfile),
                keyfile=_text(self.ssl_keyfile),
                password=key_password.get_secret_value() if key_password else None,
            )
        except (ssl.SSLError, OSError) as exc:  # a file that is no certificate, or its key's
            raise ConfigError(f"SMI_SSL_CAFILE, SMI_SSL_CERTFILE or SMI_SSL_KEYFILE cannot be "
                              f"used: {exc}") from None


class BrokerSettings(BaseSettings):
    """The local broker ``smi kafka`` runs (``SMI_KAFKA_*``), apart from what a worker reads.
    It lives in ``kafka`` under ``SMI_DATA_DIR`` unless ``SMI_KAFKA_HOME`` says where; how
    clients reach and log in to it (SASL, TLS) are the worker's :class:`Settings`."""

    model_config = SettingsConfigDict(env_prefix="SMI_", frozen=True, extra="ignore")

    data_dir: Path = Field(default_factory=lambda: DEFAULT_DATA_DIR.resolve())
    kafka_version: str = "4.4.0"
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_home: Path = Field(DEFAULT_DATA_DIR / "kafka", description="jars, data and logs; "
                             "kafka in SMI_DATA_DIR unless set")
    kafka_heap: str = "1g"
    kafka_ssl_certfile: Path | None = Field(None, description="`smi kafka up --tls`: the "
                                            "broker's certificate (chain), PEM")
    kafka_ssl_keyfile: Path | None = Field(None, description="its private key, PEM (PKCS#8)")

    @model_validator(mode="before")
    @classmethod
    def _kafka_home(cls, data: object) -> object:
        # SMI_DATA_DIR alone moves everything smi writes, the broker's jars and logs included
        if isinstance(data, dict) and not data.get("kafka_home"):
            data_dir = Path(data.get("data_dir") or DEFAULT_DATA_DIR).resolve()
            data = {**data, "kafka_home": data_dir / "kafka"}
        return data


def _text(path: Path | None) -> str | None:
    return str(path) if path else None


def check_address(address: str) -> None:
    """``host:port`` (or a bare host, on Kafka's port), the port a number a socket takes."""
    host, colon, port = address.rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = address, "9092"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (a port from 1 to 65535)")


def check_private(path: Path) -> None:
    """A secret's file must exist and be the owner's alone (as ssh asks of a private key)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                         f"chmod 600 {path}")


def web_address(host: str, port: int) -> str:
    """Where a client on this machine reaches a worker listening on ``host``: an address for
    every interface is reached on loopback; an IPv6 address goes in brackets."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """``SMI_`` variables that are no setting but close to one: a typo, whose setting would
    otherwise take its default without a word."""
    known = {f"SMI_{name.upper()}" for cls in (Settings, BrokerSettings)
             for name in cls.model_fields}
    return [f"{name} is not a setting (did you mean {close[0]}?)" for name in sorted(environ)
            if name.startswith("SMI_") and name not in known
            and (close := difflib.get_close_matches(name, known, n=1, cutoff=0.85))]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other machines may resolve to this one


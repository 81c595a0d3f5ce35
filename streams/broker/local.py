"""Runs Kafka brokers (combined broker + controller, KRaft) on 127.0.0.1 with the machine's Java.

Layout under ``SMI_KAFKA_HOME`` (``kafka`` in ``SMI_DATA_DIR``)::

    <version>/libs/*.jar              fetched once by Maven from pom.xml (beside this file)
    cluster-<port>/node-<id>/         server.properties, log4j2.yaml, data/, server.log, pid

Node ``i`` (from 1) listens on ``port + 2(i-1)`` for clients and the next port for the
controller quorum, so ``--nodes 3`` on 9092 takes 9092-9097.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams.errors import BrokerError
from streams.net import cannot_bind
from streams.settings import BrokerSettings, Settings

POM = Path(__file__).with_name("pom.xml")  # package data: installed with the package
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def exit_log(self) -> str:
        """Where a node that exited said why: also the JVM's own output, which holds what
        stopped it before its log began (a bad heap size, say)."""
        out = self.home / "stdout.log"
        said = out.exists() and out.stat().st_size > 0
        return f"{self.log_file} and {out}" if said else str(self.log_file)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, ...]
    home: Path

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{n.port}" for n in self.nodes)


def cluster(local: BrokerSettings, nodes: int = 1, port: int | None = None) -> Cluster:
    base = port or local.kafka_port
    home = local.kafka_home / f"cluster-{base}"
    layout = tuple(
        Node(i, base + 2 * (i - 1), base + 2 * (i - 1) + 1, home / f"node-{i}")
        for i in range(1, nodes + 1)
    )
    return Cluster(layout, home)


def libs(local: BrokerSettings) -> Path:
    return local.kafka_home / local.kafka_version / "libs"


def fetch(local: BrokerSettings) -> Path:
    """Copy Kafka and its runtime dependencies from Maven Central, once."""
    target = libs(local)
    done = target / ".complete"
    if done.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed to fetch Kafka: apt-get install maven")
    print(f"fetching Apache Kafka {local.kafka_version} from Maven Central...", file=sys.stderr)
    command = [
        mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={local.kafka_version}", f"-Dkafka.lib.dir={target}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"mvn could not fetch Kafka:\n{result.stdout}\n{result.stderr}")
    done.touch()
    return target


def up(
    local: BrokerSettings, settings: Settings, nodes: int = 1, port: int | None = None,
    timeout: float = 90, scram: bool = False, tls: bool = False,
) -> Cluster:
    """Format (first time only) and start the cluster as ``local`` says; return once every
    node takes clients as ``settings`` have them log in.

    ``scram``: clients must log in with SASL/SCRAM-SHA-512 as ``SMI_SASL_USERNAME`` and the
    password of ``SMI_SASL_PASSWORD_FILE`` or ``SMI_SASL_PASSWORD`` (created when the storage
    is formatted). ``tls``: clients connect over TLS to the certificate and key of
    ``SMI_KAFKA_SSL_CERTFILE`` / ``SMI_KAFKA_SSL_KEYFILE`` and must show a certificate that
    ``SMI_SSL_CAFILE`` signed (one CA for both: the broker's must chain to it too)."""
    layout = cluster(local, nodes, port)
    if scram or tls:
        _check_security(local, settings, scram, tls)
        layout.home.mkdir(parents=True, exist_ok=True)
        (layout.home / "security").write_text(PROTOCOLS[scram, tls])
    existing = _recorded_nodes(layout.home)
    if existing and existing != nodes:
        raise BrokerError(
            f"{layout.home} holds a {existing}-node cluster: run `smi kafka down --purge` first"
        )
    jars = fetch(local)
    cluster_id = _cluster_id(layout.home)
    started: list[Node] = []
    try:
        for node in layout.nodes:
            if node.pid() is None:
                _check_free(node)
                _start(node, layout, cluster_id, jars, local, settings)
                started.append(node)
        _wait_ready(layout, timeout, settings)
    except BrokerError:
        for node in started:  # no half cluster left behind
            stop_node(node)
        raise
    return layout


# (scram, tls): the protocol of the client (and inter-broker) listener
PROTOCOLS = {(False, False): "PLAINTEXT", (True, False): "SASL_PLAINTEXT",
             (False, True): "SSL", (True, True): "SASL_SSL"}


def _check_security(local: BrokerSettings, settings: Settings, scram: bool, tls: bool
                    ) -> None:
    if scram and not (settings.sasl_username and settings.sasl_secret()):
        raise BrokerError("--scram needs SMI_SASL_USERNAME and SMI_SASL_PASSWORD_FILE "
                          "(or SMI_SASL_PASSWORD)")
    if scram and not _SAFE_NAME.fullmatch(settings.sasl_username or ""):
        raise BrokerError("--scram needs a SMI_SASL_USERNAME of letters, digits and ._@-")
    if tls and not (local.kafka_ssl_certfile and local.kafka_ssl_keyfile
                    and settings.ssl_cafile):
        raise BrokerError("--tls needs SMI_KAFKA_SSL_CERTFILE and SMI_KAFKA_SSL_KEYFILE (the "
                          "broker's) and SMI_SSL_CAFILE (the CA of the clients' certificates)")
    if tls and not settings.ssl_certfile:
        # the broker asks every client for a certificate, this check that it serves too
        raise BrokerError("--tls needs a client certificate to see the broker serve: "
                          "SMI_SSL_CERTFILE and SMI_SSL_KEYFILE")


# the user's name goes into --add-scram and the JAAS line, where "," "]" and '"' would end it
_SAFE_NAME = re.compile(r"[A-Za-z0-9._@-]+")


def _check_free(node: Node) -> None:
    """A port in use fails a node's start only in its log: say which, here."""
    for port in (node.port, node.controller_port):
        if cannot_bind(HOST, port) is not None:
            raise BrokerError(f"port {port} on {HOST} is in use: stop what holds it or "
                              "choose another first port (--port / SMI_KAFKA_PORT)")


def protocol(layout: Cluster) -> str:
    """The security protocol clients of this cluster use."""
    try:
        recorded = (layout.home / "security").read_text().strip()
    except OSError:
        return "PLAINTEXT"
    return "SASL_PLAINTEXT" if recorded == "SCRAM-SHA-512" else recorded  # as once recorded


def _scram(layout: Cluster) -> bool:
    return protocol(layout).startswith("SASL")


def _tls(layout: Cluster) -> bool:
    return protocol(layout).endswith("SSL")


def down(local: BrokerSettings, port: int | None = None, purge: bool = False) -> list[Node]:
    """Stop every node of the cluster on ``port`` (SIGTERM, then SIGKILL after 30 s)."""
    nodes = _recorded_nodes(cluster(local, 1, port).home) or 1
    layout = cluster(local, nodes, port)
    stopped = [n for n in layout.nodes if stop_node(n)]
    if purge:
        shutil.rmtree(layout.home, ignore_errors=True)
    return stopped


def stop_node(node: Node, timeout: float = 30, kill: bool = False) -> bool:
    """Stop a node (SIGTERM, or SIGKILL with ``kill``; SIGKILL after ``timeout`` s); whether
    one ran and is gone."""
    pid = node.pid()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):  # gone meanwhile
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    if not _gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _gone(pid, 10):  # its port closes with it: nothing of it answers once gone
            return False  # its pid file kept: still ours
    node.pid_file.unlink(missing_ok=True)
    return True


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _alive(pid)


def start_node(local: BrokerSettings, settings: Settings, node: Node, layout: Cluster,
               timeout: float = 90) -> None:
    """Start one node of an existing cluster again (after :func:`stop_node`)."""
    _start(node, layout, _cluster_id(layout.home), fetch(local), local, settings)
    _wait_port(node.port, timeout, node)


def status(local: BrokerSettings, port: int | None = None) -> list[tuple[Node, int | None]]:
    nodes = _recorded_nodes(cluster(local, 1, port).home) or 1
    return [(n, n.pid()) for n in cluster(local, nodes, port).nodes]


def _recorded_nodes(home: Path) -> int:
    try:
        return int((home / "nodes").read_text())
    except (OSError, ValueError):
        return 0


def _cluster_id(home: Path) -> str:
    path = home / "cluster-id"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        # KRaft wants 16 random bytes in URL-safe base64 without padding.
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text().strip()


def _start(node: Node, layout: Cluster, cluster_id: str, jars: Path, local: BrokerSettings,
           settings: Settings) -> None:
    node.home.mkdir(parents=True, exist_ok=True)
    (layout.home / "nodes").write_text(str(len(layout.nodes)))
    config = node.home / "server.properties"
    _write_private(config, _server_properties(node, layout) + _sasl_properties(layout, settings)
                   + _tls_properties(node, layout, local, settings))
    (node.home / "log4j2.yaml").write_text(_LOG4J.format(log=node.log_file))
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java 17 is needed to run Kafka: apt-get install openjdk-17-jre-headless")
    classpath = f"{jars}/*"
    if not (node.home / "data" / "meta.properties").exists():
        _format(java, classpath, node, config, cluster_id, _scram_user(layout, settings))
    command = [
        java, f"-Xmx{local.kafka_heap}", "-Xms256m", "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.home / 'log4j2.yaml'}",
        "-cp", classpath, "kafka.Kafka", str(config),
    ]
    with open(node.home / "stdout.log", "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    node.pid_file.write_text(str(process.pid))


def _format(java: str, classpath: str, node: Node, config: Path, cluster_id: str,
            scram: list[str]) -> None:
    """Format the node's storage. The arguments go to java in an argument file (mode 0600,
    removed after): a SCRAM credential on a command line is in every user's ``ps``."""
    # "=": a random ID may start with "-", which would read as an option
    arguments = ["-cp", classpath, "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", f"--config={config}", "--ignore-formatted",
                 *scram]
    argfile = node.home / "format.args"
    _write_private(argfile, "".join(f"{_java_quoted(a)}\n" for a in arguments))
    try:
        _run([java, f"@{argfile}"])
    finally:
        argfile.unlink(missing_ok=True)


def _java_quoted(argument: str) -> str:
    """One argument of a java argument file: in double quotes, with \\ and \" escaped."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, from its creation on."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)


def _scram_user(layout: Cluster, settings: Settings) -> list[str]:
    """The credential as a salt and salted password (base64): StorageTool splits its
    argument at ",", so a password holding one could not be given as it is."""
    if not _scram(layout):
        return []
    user, password = settings.sasl_username, settings.sasl_secret()
    assert user and password is not None
    salt = secrets.token_bytes(32)
    # SCRAM's Hi() is PBKDF2 with the mechanism's HMAC (RFC 5802)
    salted = hashlib.pbkdf2_hmac("sha512", password.get_secret_value().encode(), salt,
                                 SCRAM_ITERATIONS)
    encoded = f"salt={_b64(salt)},saltedpassword={_b64(salted)},iterations={SCRAM_ITERATIONS}"
    return [f"--add-scram=SCRAM-SHA-512=[name={user},{encoded}]"]


SCRAM_ITERATIONS = 8192


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sasl_properties(layout: Cluster, settings: Settings) -> str:
    """Clients and brokers on SASL with SCRAM-SHA-512; the controllers stay plain."""
    if not _scram(layout):
        return ""
    user, password = settings.sasl_username, settings.sasl_secret()
    assert user and password is not None
    module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    jaas = (f"{module} required username={_jaas_quoted(user)} "
            f"password={_jaas_quoted(password.get_secret_value())};")
    return "\n".join([
        f"listener.security.protocol.map=PLAINTEXT:{protocol(layout)},CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.plaintext.scram-sha-512.sasl.jaas.config={_property_value(jaas)}",
        "",
    ])


def _tls_properties(node: Node, layout: Cluster, local: BrokerSettings, settings: Settings
                    ) -> str:
    """The client listener on TLS with the broker's certificate (PEM); clients must show one
    the CA of SMI_SSL_CAFILE signed."""
    if not _tls(layout):
        return ""
    cert, key, ca = local.kafka_ssl_certfile, local.kafka_ssl_keyfile, settings.ssl_cafile
    assert cert and key and ca
    keystore = node.home / "keystore.pem"  # Kafka's PEM keystore: the key, then the chain
    _write_private(keystore, key.read_text().rstrip() + "\n" + cert.read_text())
    lines = [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={_property_value(str(keystore))}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={_property_value(str(ca))}",
        "ssl.client.auth=required",
        "",
    ]
    if not _scram(layout):
        lines.insert(0, "listener.security.protocol.map=PLAINTEXT:SSL,CONTROLLER:PLAINTEXT")
    return "\n".join(lines)


def _jaas_quoted(value: str) -> str:
    """A JAAS option value: in double quotes, with \\ and \" escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _property_value(value: str) -> str:
    """A value as java.util.Properties reads it back: \\ doubled; anything outside printable
    ASCII (a newline would end the line; the file is read as Latin-1) as \\uXXXX."""
    escaped = value.replace("\\", "\\\\")
    return "".join(c if " " <= c <= "~" else "".join(
        f"\\u{unit:04x}" for unit in _utf16(c)) for c in escaped)


def _utf16(character: str) -> list[int]:
    data = character.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _server_properties(node: Node, layout: Cluster) -> str:
    n = len(layout.nodes)
    voters = ",".join(f"{m.node_id}@{HOST}:{m.controller_port}" for m in layout.nodes)
    replicas = min(3, n)
    min_isr = min(2, n)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{node.port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={node.home / 'data'}",
        "num.partitions=8",
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=8",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        "transaction.state.log.num.partitions=8",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=4",
        "log.retention.hours=168",
        "log.segment.bytes=104857600",
        # a segment's index files are made at their full size, as holes; on some kernels the
        # first write to one zero-fills megabytes of it (readahead over the holes), which held
        # up a new topic's first writes for up to a second. A 100 MB segment's indexes take
        # 300 KiB at most (an entry per 4 KiB), so 1 MiB never rolls a segment early
        "log.index.size.max.bytes=1048576",
        "log.cleaner.backoff.ms=2000",  # compacted changelogs get cleaned within seconds
        "auto.create.topics.enable=false",  # every topic is made on purpose, with its policy
        "",
    ])


_LOG4J = """Configuration:
  Appenders:
    RollingFile:
      name: FILE
      fileName: "{log}"
      filePattern: "{log}.%i"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
      SizeBasedTriggeringPolicy:
        size: 50MB
      DefaultRolloverStrategy:
        max: 3
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: FILE
    Logger:
      - name: kafka.request.logger
        level: WARN
"""


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"{' '.join(command[:4])}... failed:\n{result.stdout}{result.stderr}")


def _wait_ready(layout: Cluster, timeout: float, settings: Settings) -> None:
    deadline = time.monotonic() + timeout
    for node in layout.nodes:
        _wait_port(node.port, timeout, node)
    options = settings.model_copy(update={
        "broker": layout.bootstrap,
        "security_protocol": protocol(layout),
        "sasl_mechanism": "SCRAM-SHA-512",
    }).kafka_client_options()
    while time.monotonic() < deadline:
        if asyncio.run(_brokers_registered(options)) >= len(layout.nodes):
            return
        time.sleep(0.5)
    raise BrokerError(f"the cluster did not register all {len(layout.nodes)} brokers in time")


async def _brokers_registered(options: dict[str, object]) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **options)
    try:
        await admin.start()
        described = await admin.describe_cluster()
        return len(described["brokers"])
    except Exception:  # not up yet: any client error means "ask again"
        return 0
    finally:
        await admin.close()


def _wait_port(port: int, timeout: float, node: Node) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.pid() is None:
            raise BrokerError(f"Kafka node {node.node_id} exited: see {node.exit_log}")
        if answers(port):
            return
        time.sleep(0.3)
    raise BrokerError(f"Kafka node {node.node_id} did not listen on {port}: see {node.log_file}")


def answers(port: int) -> bool:
    """Whether something listens on ``port`` of this host (a node of another data directory,
    say, which :func:`status` cannot see)."""
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True

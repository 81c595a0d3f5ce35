"""The CLI through the real broker and real workers: produce, tail, device, query routing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.tools.client import Kafka, input_topics
from tests.integration.harness import SMI, Worker

pytestmark = pytest.mark.integration

SUPPLIER = "90-B3-D5-1F-30-01-00-00"


def device(n: int) -> str:
    return f"00-DB-12-34-56-78-{n // 256:02X}-{n % 256:02X}"


def inventory(n: int) -> dict[str, object]:
    return {
        "device_id": device(n).lower(), "device_type": "ESME", "smets": 2, "manufacturer": "AB01",
        "model": "010A030B", "hardware_version": "0001", "firmware_version": "0002012F",
        "status": "Commissioned", "supplier": SUPPLIER, "gpf_id": None,
        "at": "2026-11-24T08:00:00Z",
    }


def smi(worker: Worker, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SMI, *args], input=data, capture_output=True, text=True, timeout=120,
                          env=worker.settings_env(), check=False)


async def test_produce_validates_then_tail_shows_the_answers(
    prefix: str, worker_factory: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = worker_factory(prefix)
    lines = [
        json.dumps({"request_id": f"{SUPPLIER}:{device(1)}:1", "sr": "11.2",
                    "originator": SUPPLIER, "device_id": device(1), "at": "2026-11-24T08:00:00Z"}),
        '{"request_id": "x", "sr": "11.2"}',
        json.dumps({"request_id": f"{SUPPLIER}:{device(2)}:2", "sr": "4.1.1",
                    "originator": SUPPLIER, "device_id": device(2), "at": "2026-11-24T08:00:00Z"}),
    ]
    path = tmp_path / "requests.jsonl"
    utf16 = lines[0].encode("utf-16")  # as some editors save it: refused, not a traceback
    path.write_bytes("\n".join(lines).encode() + b"\n" + utf16 + b"\n")
    produced = smi(worker, "produce", "duis.service-requests", str(path))
    assert produced.returncode == 1
    assert "line 2: refused:" in produced.stderr and "sent 2, refused 2" in produced.stderr
    assert "line 4: refused: not UTF-8 text (invalid start byte at byte 1)" in produced.stderr
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
    tailed = smi(worker, "tail", "duis.rejections", "--from-beginning", "--max", "2")
    assert tailed.returncode == 0, tailed.stderr
    out = tailed.stdout.splitlines()
    assert len(out) == 2 and all("reason=unknown-device" in line for line in out)
    raw = smi(worker, "tail", "duis.rejections", "--from-beginning", "--max", "2", "--raw")
    assert {json.loads(line)["device_id"] for line in raw.stdout.splitlines()} == {
        device(1), device(2)}
    first = smi(worker, "tail", "duis.rejections", "--from-beginning", "--max", "1")
    assert len(first.stdout.splitlines()) == 1, first.stdout  # not the whole fetch


async def test_any_worker_answers_for_every_device(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    """Two workers in one group: each device is answered by both, whichever owns it."""
    first = worker_factory(prefix)
    second = worker_factory(prefix, app_id=first.app_id)
    first.wait_ready()
    devices = range(1, 25)
    data = "\n".join(json.dumps(inventory(n)) for n in devices) + "\n"
    assert smi(first, "produce", "smi.inventory", data=data).returncode == 0
    removal = {"manufacturer": "AB01", "model": "010A030B", "hardware_version": "0001",
               "firmware_version": "0002012F", "firmware_hash": "0002012F" * 8,
               "status": "Removed", "at": "2026-11-24T09:00:00Z"}
    assert smi(first, "produce", "cpl.entries", data=json.dumps(removal)).returncode == 0
    settings = first.settings()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(first.app_id, input_topics(settings))
    first.wait_ready()
    second.wait_ready()
    for n in devices:
        a, b = answers(first, second, f"/devices/{device(n)}")
        assert a is not None and a == b, f"{device(n)}: first {a}, second {b}"
        assert a["device_id"] == device(n) and a["status"] == "Suspended"
        assert a["status_before_suspension"] == "Commissioned"
    shown = smi(second, "device", device(3).lower())
    assert shown.returncode == 0, shown.stderr
    assert "recent corrections (1)" in shown.stdout
    assert "Commissioned 0002012F -> Suspended 0002012F  cpl-removed" in shown.stdout
    stats = [first.get("/stats"), second.get("/stats")]
    inventory_in = sum(s["accounted"]["smi.inventory"]["processed"] for s in stats
                       if "smi.inventory" in s["accounted"])
    assert inventory_in == len(devices)
    assert sum(s["corrections_by_cause"].get("cpl-removed", 0) for s in stats) == len(devices)
    # each counts only the devices it owns (not its standby copies), and both own some
    owned = [sum(s["devices_by_status"].values()) for s in stats]
    assert sum(owned) == len(devices) and all(owned), owned
    metrics = first.get_text("/metrics")
    both = metrics + second.get_text("/metrics")
    assert "smi_consumer_lag 0" in metrics
    assert 'smi_messages_in_total{topic="smi.inventory"}' in both
    # every inventory record and every device the removal suspended was read once at least
    reads = sum(float(line.rsplit(" ", 1)[1]) for line in both.splitlines()
                if line.startswith("smi_recent_record_reads_total{"))
    assert reads >= 2 * len(devices), both
    missing = smi(second, "device", device(999))
    assert missing.returncode == 1 and "no device" in missing.stderr


def answers(first: Worker, second: Worker, path: str, seconds: float = 30) -> tuple[Any, Any]:
    """Both workers' answers, asked again while they differ: for a moment after a rebalance
    (and until a group has taken a CPL change in its order) the two may not agree yet."""
    deadline = time.monotonic() + seconds
    while True:
        a, b = first.get(path, quiet=True), second.get(path, quiet=True)
        if (a is not None and a == b and a.get("status") == "Suspended") or (
                time.monotonic() > deadline):
            return a, b
        time.sleep(0.2)


def test_api_requires_the_bearer_token_when_configured(
    prefix: str, worker_factory: Callable[..., Worker]
) -> None:
    import urllib.error
    import urllib.request

    token = "s3cret-" + prefix
    worker = worker_factory(prefix, env={"SMI_API_TOKEN": token})
    base = f"http://127.0.0.1:{worker.web_port}"
    for path in ("/devices/00-DB-12-34-56-78-00-01", "/stats", "/metrics"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=5)
        assert refused.value.code == 401
        wrong = urllib.request.Request(base + path, headers={"Authorization": "Bearer nope"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=5)
        assert refused.value.code == 401
    for path in ("/table/device_to_record/00-DB-12-34-56-78-00-01/", "/router/"):
        with pytest.raises(urllib.error.HTTPError) as refused:  # faust's pages are off
            urllib.request.urlopen(base + path, timeout=5)
        assert refused.value.code == 404
    right = urllib.request.Request(base + "/stats", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(right, timeout=5) as answer:
        assert answer.status == 200
    for path in ("/devices/bogus", "/page/devices/bogus"):  # no redirect to BOGUS, then 404
        asked = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(asked, timeout=5)
        assert refused.value.code == 400 and b"not a device ID" in refused.value.read()
    assert worker.get("/health")["ready"] is True  # health stays open for load balancers
    shown = smi(worker, "device", "00-DB-12-34-56-78-00-01")  # smi reads SMI_API_TOKEN
    assert shown.returncode == 1 and "no device" in shown.stderr
    assert token not in worker.tail(1000)
    assert _listening(worker.web_port) == {"127.0.0.1"}  # SMI_WEB_HOST only, as `ss -ltn` shows


def _listening(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


def _address(hexed: str) -> str:
    """/proc/net/tcp's little-endian hex address, as text (IPv4; IPv6 as '::' or hex)."""
    if len(hexed) == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hexed)))
    return "::" if set(hexed) == {"0"} else hexed


def test_one_command_runs_several_members_of_one_group(
    prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``smi worker --processes 2``: two workers of the group, a data directory and a web port
    each; the partitions split between them; SIGTERM stops both."""
    port = _two_free_ports()
    members = [Worker(kafka_bootstrap, prefix.rstrip("."), prefix,
                      env={"SMI_DATA_DIR": str(tmp_path / "data")}, web_port=port + n)
               for n in (0, 1)]
    log_path = tmp_path / "members.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([SMI, "worker", "--processes", "2"],
                                   env=members[0].settings_env(), stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        for member in members:
            member.process, member.log_path = process, log_path
            member.wait_ready(120)
        owners: set[str] = set()
        deadline = time.monotonic() + 60
        while len(owners) < 2 and time.monotonic() < deadline:  # both joined, then split
            owners = {p["owner"] for p in members[0].get("/page/fleet")["partitions"]}
            time.sleep(0.5)
        assert len(owners) == 2, owners
        assert {p.name for p in (tmp_path / "data").iterdir()} >= {"member-0", "member-1"}
    finally:
        process.terminate()
        code = process.wait(timeout=90)
    assert code == 0, log_path.read_text(errors="replace")[-3000:]


def _two_free_ports() -> int:
    import socket

    for _ in range(20):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two free ports in a row")


async def test_produce_counts_what_the_broker_refused_as_not_sent(
    prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Lines the broker refuses (each over the topic's max.message.bytes) are reported by
    line, not counted as sent: aiokafka's flush raises none of its records' errors."""
    import os

    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.settings import Settings
    from streams.topics import ensure

    settings = Settings(broker=kafka_bootstrap, topic_prefix=prefix, data_dir=tmp_path)
    await ensure(settings)
    async with Kafka(settings) as kafka:
        await kafka.admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, settings.topic("smi.inventory"),
            {"max.message.bytes": "200"})])
    path = tmp_path / "inventory.jsonl"
    path.write_text("".join(json.dumps(inventory(n)) + "\n" for n in (1, 2)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMI_")}
    env |= {"SMI_BROKER": kafka_bootstrap, "SMI_TOPIC_PREFIX": prefix,
            "SMI_DATA_DIR": str(tmp_path)}
    produced = subprocess.run([SMI, "produce", "smi.inventory", str(path)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert produced.returncode == 1, produced.stderr
    assert "line 1: not delivered: MessageSizeTooLargeError" in produced.stderr, produced.stderr
    assert "sent 0, refused 2" in produced.stderr


async def test_verify_and_rebuild_refuse_input_that_no_longer_starts_at_offset_0(
    prefix: str, worker_factory: Callable[..., Worker], tmp_path: Path
) -> None:
    """Both decide again from the input alone: an input partition cut by retention or
    delete-records would make verify miss what the group decided and rebuild write a partial
    table. Each exits 1 with one line naming the partition."""
    from aiokafka.admin import RecordsToDelete

    from streams.tables import changelog_topic

    worker = worker_factory(prefix)
    path = tmp_path / "inventory.jsonl"
    path.write_text("".join(json.dumps(inventory(n)) + "\n" for n in range(1, 9)))
    assert smi(worker, "produce", "smi.inventory", str(path)).returncode == 0
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        await kafka.wait_consumed(worker.app_id, input_topics(settings))
    assert smi(worker, "verify").returncode == 0
    other = subprocess.run([SMI, "verify"], capture_output=True, text=True, timeout=120,
                           env={**worker.settings_env(), "SMI_PARTITIONS": "4"}, check=False)
    assert other.returncode == 1 and "has 8 partitions but SMI_PARTITIONS is 4" in other.stderr
    topic = settings.topic("smi.inventory")
    async with Kafka(settings) as kafka:
        ends = await kafka.end_offsets([topic])
        cut = next(tp for tp, end in sorted(ends.items()) if end > 0)
        await kafka.admin.delete_records({cut: RecordsToDelete(1)})
    checked = smi(worker, "verify")
    assert checked.returncode == 1
    assert f"{topic}[{cut.partition}] no longer start at offset 0" in checked.stderr
    assert "Traceback" not in checked.stderr
    worker.stop()
    async with Kafka(settings) as kafka:  # the table lost too: rebuild is all that is left
        await kafka.admin.delete_topics([changelog_topic(settings)])
        while changelog_topic(settings) in await kafka.admin.list_topics():
            await asyncio.sleep(0.2)
    rebuilt = smi(worker, "rebuild")
    assert rebuilt.returncode == 1
    assert f"{topic}[{cut.partition}] no longer start at offset 0" in rebuilt.stderr
    assert "Traceback" not in rebuilt.stderr


def test_replay_of_topics_that_are_not_there_says_so(kafka_bootstrap: str, tmp_path: Path
                                                     ) -> None:
    """A prefix the topics do not have must not look like a policy that changes nothing."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SMI_")}
    env |= {"SMI_BROKER": kafka_bootstrap, "SMI_TOPIC_PREFIX": "not-there.",
            "SMI_DATA_DIR": str(tmp_path)}
    replayed = subprocess.run([SMI, "replay", "--compare"], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "there is no input topic (not-there.cpl.entries" in replayed.stderr
    assert "SMI_TOPIC_PREFIX" in replayed.stderr and "Traceback" not in replayed.stderr

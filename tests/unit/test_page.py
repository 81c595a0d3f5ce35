"""The operator's page and /metrics without a broker: what a worker keeps for them, how the
group's view is summed from the workers' parts, the Prometheus text, the shipped assets and
the dashboard and alert rules over the metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tomllib
from collections import Counter
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from schemas.models import DeadLetter, Rejection
from streams import fleet, topics
from streams.app import create_app
from streams.emit import Emitter
from streams.live import MINUTES, CachedCount, PerMinute, Tail
from streams.metrics import Metrics, Snapshot, exposition
from streams.settings import Settings
from streams.tools.workload import Workload
from tests.unit.incoming import Message, drive

REPO = Path(__file__).resolve().parents[2]
DEVICE = "00-DB-12-34-56-78-00-01"


def rejection(n: int) -> Rejection:
    return Rejection(request_id=f"R{n}", device_id=DEVICE, sr="11.2", reason="unknown-device",
                     response_code="E4", at="2026-11-24T08:00:00Z")  # type: ignore[arg-type]


def test_the_tail_keeps_the_latest_outputs_each_with_the_input_that_caused_it() -> None:
    tail = Tail(size=3)
    for n in range(5):
        tail.cause = fleet_input(n)
        tail.add(rejection(n))
    tail.add(object())  # type: ignore[arg-type]  # other outputs are not shown
    shown = tail.to_json()
    assert [e["output"]["request_id"] for e in shown] == ["R4", "R3", "R2"]
    assert shown[0]["kind"] == "rejection" and shown[0]["device_id"] == DEVICE
    assert shown[0]["input"] == {"topic": "duis.service-requests", "partition": 1, "offset": 4,
                                 "value": '{"n": 4}'}


def fleet_input(n: int) -> Any:
    from streams.live import Input

    return Input("duis.service-requests", 1, n, b'{"n": %d}' % n)


def test_corrections_per_minute_keep_the_last_hour() -> None:
    now = [1_000_000 * 60.0]
    per_minute = PerMinute(clock=lambda: now[0])
    per_minute.add("cpl-removed")
    per_minute.add("cpl-removed")
    per_minute.add("sr11.2-response")
    now[0] += MINUTES * 60  # an hour on: the first minute is out of the window
    per_minute.add("sr11.2-response")
    assert per_minute.to_json() == {str(int(now[0])): {"sr11.2-response": 1}}
    assert len(per_minute.minutes) == 1


async def test_a_count_is_shared_and_made_again_only_once_it_is_old() -> None:
    clock, scans, key = [0.0], [], ["generation 1"]

    async def count() -> Counter[str]:
        scans.append(clock[0])
        await asyncio.sleep(0)
        return Counter({"Commissioned": len(scans)})

    cached = CachedCount(count, key=lambda: key[0], clock=lambda: clock[0])
    together = await asyncio.gather(cached.get(), cached.get(), cached.get())
    assert len(scans) == 1 and all(c["Commissioned"] == 1 for c in together)
    clock[0] += 1.0
    assert (await cached.get())["Commissioned"] == 1  # younger than two seconds
    clock[0] += 1.5
    assert (await cached.get())["Commissioned"] == 2
    key[0] = "generation 2"  # a rebalance: the partitions counted may have moved
    assert (await cached.get())["Commissioned"] == 3


async def test_a_slow_count_is_made_less_often() -> None:
    clock = [0.0]

    async def count() -> Counter[str]:
        clock[0] += 5.0  # a big table: five seconds a scan
        return Counter()

    cached = CachedCount(count, clock=lambda: clock[0])
    await cached.get()
    assert cached.refresh == 50.0


def part(url: str, counts: dict[str, int] | None, lag: int = 0, **extra: Any) -> dict[str, Any]:
    return {"worker": url, "ok": True, "rebalancing": False, "devices_by_status": counts,
            "counted_seconds_ago": 0.5, "corrections_by_cause": {"cpl-removed": 1},
            "corrections_per_minute": {"60": {"cpl-removed": 1}},
            "accounted": {"smi.inventory": {"processed": 2}},
            "lag": [{"topic": "smi.inventory", "partition": 0 if url == "a" else 1, "lag": lag}],
            "tail": [{"seq": 1, "at": f"2026-11-24T08:00:0{len(url)}Z", "kind": "rejection"}],
            "policy": {"secmp0007": False}, **extra}


def test_the_group_view_sums_every_workers_part_through_the_host_map() -> None:
    host_map = {"a": {"app-device_to_record-changelog": [0]},
                "bb": {"app-device_to_record-changelog": [1]}}
    parts = [part("a", {"Commissioned": 2}, lag=3),
             part("bb", {"Commissioned": 1, "Suspended": 4}, lag=5)]
    view = fleet.merge(parts, fleet.owners(host_map), "app")
    assert view["devices_by_status"] == {"Commissioned": 3, "Suspended": 4}
    assert view["complete"] and not view["rebalancing"]
    assert view["corrections_by_cause"] == {"cpl-removed": 2}
    assert view["corrections_per_minute"] == {"60": {"cpl-removed": 2}}
    assert view["accounted"] == {"smi.inventory": {"processed": 4}}
    assert [(p["partition"], p["owner"], p["lag"]) for p in view["partitions"]] == [
        (0, "a", 3), (1, "bb", 5)]
    assert [e["worker"] for e in view["tail"]] == ["bb", "a"]  # newest first
    assert view["policy"] == {"secmp0007": False} and view["policy_differs"] == []


def test_a_worker_that_does_not_answer_is_shown_and_its_counts_are_missing() -> None:
    parts = [part("a", {"Commissioned": 2}),
             {"worker": "bb", "ok": False, "error": "no answer in 3 s"}]
    view = fleet.merge(parts, {0: "a", 1: "bb"}, "app")
    assert view["devices_by_status"] == {"Commissioned": 2} and not view["complete"]
    assert view["workers"][1] == {"url": "bb", "ok": False, "error": "no answer in 3 s",
                                  "rebalancing": False, "devices": None,
                                  "counted_seconds_ago": None}
    assert view["partitions"][1]["lag"] is None


def test_a_rebalance_is_a_state_of_the_group_not_an_error() -> None:
    view = fleet.merge([part("a", None, rebalancing=True)], {0: "a"}, "app")
    assert view["rebalancing"] and not view["complete"]
    assert fleet.merge([part("a", {})], {}, "app")["rebalancing"]  # nothing assigned yet


async def test_gather_asks_every_worker_and_says_why_one_gave_nothing() -> None:
    async def ask(url: str) -> dict[str, Any]:
        if url == "down":
            raise RuntimeError("answered 401")
        return {"devices_by_status": {}}

    parts = await fleet.gather(["up", "down"], ask)
    assert parts == [{"devices_by_status": {}, "worker": "up", "ok": True},
                     {"worker": "down", "ok": False, "error": "answered 401"}]
    assert fleet.same_worker("http://127.0.0.1:6066", "http://127.0.0.1:6066/")
    assert not fleet.same_worker("http://127.0.0.1:6066", "http://127.0.0.1:6067")


def test_a_devices_history_names_each_changes_cause_and_source() -> None:
    value = {"device_id": DEVICE, "status": "Commissioned", "history": [
        {"at": "t1", "cause": "cpl-removed", "source": "cpl.entries[6]@1 AB01:010A:0001:02"},
        {"at": "t2", "cause": "sr11.2-response", "source": "duis.device-responses[0]@17"}],
        "pending": [["REQ-1", "11.3", "ab" * 32, True, 1800000000.0]]}
    view = fleet.device_view(value, {k: v for k, v in value.items() if k != "pending"})
    assert [c["source"] for c in view["history"]] == [
        {"topic": "duis.device-responses", "partition": 0, "offset": 17, "id": None},
        {"topic": "cpl.entries", "partition": 6, "offset": 1, "id": "AB01:010A:0001:02"}]
    assert view["awaiting"] == [{"request_id": "REQ-1", "sr": "11.3", "firmware_hash": "ab" * 32,
                                 "retry": True, "at": 1800000000.0}]
    assert "history" not in view["record"]


def test_metrics_have_help_histograms_lag_per_partition_and_the_process() -> None:
    metrics = Metrics()
    metrics.messages_in[topics.REQUESTS] += 3
    metrics.corrections["cpl-removed"] += 2
    metrics.decided([1_000, 1_500, None], now=2.0)
    metrics.commit_seconds.observe(0.02)
    snapshot = Snapshot({"Commissioned": 5, "Suspended": 1},
                        {("p.smi.inventory", 0): 4, ("p.smi.inventory", 1): 0}, 7,
                        {"hit": 1, "miss": 2})
    families = {f.name: f for f in text_string_to_metric_families(
        exposition(metrics, snapshot).decode())}
    for name, family in families.items():
        assert family.documentation, f"{name} has no HELP"
    assert value(families, "smi_messages_in", topic=topics.REQUESTS) == 3  # names kept
    assert value(families, "smi_corrections", cause="cpl-removed") == 2
    assert value(families, "smi_table_devices") == 6
    assert value(families, "smi_devices", status="Suspended") == 1
    assert value(families, "smi_consumer_lag") == 4
    assert value(families, "smi_partition_lag", topic="p.smi.inventory", partition="0") == 4
    latency = families["smi_decision_latency_seconds"]
    assert bucket(latency, "0.5") == 1 and bucket(latency, "1.0") == 2
    assert value(families, "smi_decision_latency_seconds", suffix="_count") == 2
    assert bucket(families["smi_commit_duration_seconds"], "0.025") == 1
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= set(
        families)


def value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    family = families[name]
    wanted = {s.name: s.value for s in family.samples if s.labels == labels}
    return float(wanted[name + (suffix or ("_total" if family.type == "counter" else ""))])


def bucket(family: Any, le: str) -> float:
    return float(next(s.value for s in family.samples
                      if s.name.endswith("_bucket") and s.labels["le"] == le))


async def test_the_processor_tails_what_it_decides_and_times_what_it_sends(
    tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path, app_id="unit", topic_prefix="p.",
                              partitions=1))
    processor = app.smi.processor
    name = app.smi.settings.topic(topics.REQUESTS)
    requests = [m for m in Workload(5, seed=3).events(40, cpl_changes=False)
                if m.topic == topics.REQUESTS][:3]
    sent: list[list[int | None]] = []
    processor.emitter.on_flushed = sent.append
    processor.emitter._send_all = _nothing  # type: ignore[method-assign]
    await drive(processor, [Message(name, 0, n, m.key, m.value, timestamp=1_000 + n)
                            for n, m in enumerate(requests)]
                + [Message(name, 0, 3, b"k", b"{not json", timestamp=1_003)])
    shown = processor.tail.to_json()
    assert [e["kind"] for e in shown][:2] == ["dead letter", "rejection"]
    assert shown[0]["input"]["value"] == "{not json" and shown[0]["input"]["offset"] == 3
    assert shown[1]["input"]["topic"] == name and shown[1]["input"]["offset"] == 2
    assert isinstance(processor.tail.entries[0].output, Rejection | DeadLetter)
    assert sorted(t for batch in sent for t in batch if t) == [1_000, 1_001, 1_002, 1_003]


async def _nothing(pending: Any) -> None:
    return None


async def test_held_outputs_are_timed_when_they_are_sent() -> None:
    emitter = Emitter(app=None, input_topic="in", exactly_once=True)  # type: ignore[arg-type]
    emitter._send_all = _nothing  # type: ignore[method-assign]
    sent: list[list[int | None]] = []
    emitter.on_flushed = sent.append
    holding = [True]
    emitter.holding = lambda: holding[0]
    emitter.inputs.append(5)
    await emitter.flush()  # a transaction commits: nothing goes out yet
    holding[0] = False
    emitter.inputs.append(6)
    await emitter.flush()
    assert sent == [[5, 6]]


def test_the_page_ships_in_the_package_and_loads_nothing_from_elsewhere() -> None:
    page = resources.files("streams") / "page"
    names = sorted(p.name for p in page.iterdir())
    assert names == ["index.html", "page.css", "page.js"]
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["streams"]
    assert all(any(fnmatch(f"page/{n}", g) for g in globs) for n in names)
    for name in names:
        text = (page / name).read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//|url\((https?:)?//|https?://", text), name


SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"],
            "info": ["_info"]}


def test_the_dashboard_and_the_alerts_use_metrics_the_worker_has() -> None:
    metrics = Metrics()
    text = exposition(metrics, Snapshot({"Commissioned": 1}, {("t", 0): 0}, 0,
                                        {"hit": 0, "miss": 0})).decode()
    known = {"up"}  # Prometheus's own, per scrape target
    for family in text_string_to_metric_families(text):  # with or without samples yet
        known |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    dashboard = json.loads((REPO / "docs" / "grafana" / "smi-streams.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((REPO / "docs" / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"SmiLagGrowing", "SmiDeadLetters", "SmiWorkerDown",
            "SmiCorrectionsStopped"} <= set(alerts)
    assert all(r["annotations"]["summary"] for r in alerts.values())
    for expr in exprs + [r["expr"] for r in alerts.values()]:
        used = set(re.findall(r"\b((?:smi|process|python)_[a-z_]+|up)\b", expr))
        assert used and used <= known, f"{expr}: {used - known}"


@pytest.mark.parametrize(("authorization", "accepted"), [
    ("Bearer s3cret", True),
    ("Bearer wrong", False),
    ("Basic " + base64.b64encode(b"operator:s3cret").decode(), True),  # a browser's answer
    ("Basic " + base64.b64encode(b"operator:wrong").decode(), False),
    ("Basic " + base64.b64encode(b"s3cret").decode(), False),  # no password at all
    ("Basic not-base64!", False),
    ("s3cret", False),
    ("", False),
])
def test_the_token_is_taken_as_a_bearer_token_or_a_basic_password(
        authorization: str, accepted: bool) -> None:
    from streams.web import _given_token

    assert _given_token(authorization, "s3cret") is accepted


async def test_the_token_is_checked_before_a_request_is_forwarded_to_the_owner() -> None:
    """faust's table route sends a request on to the worker that owns the key: one without
    the token must stop at the first worker."""
    from streams.web import _token_first

    forwarded: list[str] = []

    async def route(web: Any, request: Any, device_id: str) -> str:
        forwarded.append(device_id)
        return "the owner's answer"

    def refused(web: Any, request: Any) -> str | None:
        return None if request == "with the token" else "401"

    view = _token_first(refused)(route)
    assert await view(None, "without", device_id="00-DB") == "401" and forwarded == []
    assert await view(None, "with the token", device_id="00-DB") == "the owner's answer"
    assert forwarded == ["00-DB"]

"""The operator's page in a real browser, and /metrics, against a real broker and workers.

Chromium and its driver are Debian's (``scripts/setup.sh`` installs ``chromium`` and
``chromium-driver``), driven through selenium; nothing is downloaded while the test runs.
Set ``SMI_PAGE_SCREENSHOT`` (``docs/page.png`` for the README's) to keep the screenshot the
browser test takes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from streams.tools.client import Kafka, input_topics
from tests.integration.harness import Worker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "scenarios"
STORY = SCENARIOS / "01-mp105-sr11-2-restores-suspended.json"  # a device suspended, restored
REFUSALS = SCENARIOS / "06-reject-unauthorised-unknown-and-malformed.json"  # and dead letters
DEVICE = "00-DB-12-34-56-78-00-01"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1700")
WAIT = 45.0  # seconds for the page to show what the workers have decided


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("no Chromium: run scripts/setup.sh (Debian's chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must not look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="smi-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def steps(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["steps"])


async def play(worker: Worker, sent: list[dict[str, Any]]) -> None:
    """Each step once the group has consumed every one before it (as the scenario test)."""
    settings = worker.settings()
    async with Kafka(settings) as kafka:
        for step in sent:
            await kafka.send(settings.topic(step["send"]), step.get("key"), step["value"])
            await kafka.wait_consumed(worker.app_id, input_topics(settings))


def status(url: str, token: str | None = None, basic: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if basic:
        pair = base64.b64encode(":".join(basic).encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def get_json(worker: Worker, path: str, token: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def wait_for(browser: Any, what: str, check: Callable[[], Any], seconds: float = WAIT) -> Any:
    """``check()`` once it is truthy; the page polls every 2 s, so no reload is needed."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + seconds
    while True:
        try:
            if found := check():
                return found
        except (WebDriverException, ValueError, KeyError):
            pass  # the page redrew what was being read
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed {what}; banner: "
                                 f"{text(browser, 'banner')!r}")
        time.sleep(0.3)


def text(browser: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.ID, element_id).text)


def statuses(browser: Any) -> dict[str, int]:
    """The devices-by-status card, as shown."""
    return {status: int(count) for status, count in rows(browser, "#status-counts tr", 2)}


def feed_kinds(browser: Any) -> list[str]:
    return [kind for kind, in rows(browser, "#feed tbody tr", 2, cells=False)]


def rows(browser: Any, selector: str, columns: int | None = None, cells: bool = True
         ) -> list[list[str]]:
    """The text of each row's cells (or with ``cells`` False, its data-status or data-kind),
    read in one go: the page redraws its tables every poll."""
    found = browser.execute_script("""
        return [...document.querySelectorAll(arguments[0])].map((row) => arguments[1]
            ? [...row.querySelectorAll("td")].map((cell) => cell.innerText)
            : [row.dataset.kind]);""", selector, cells)
    return [row[:columns] if columns else row for row in found]


def shown(browser: Any, element_id: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(browser.find_element(By.ID, element_id).is_displayed())


async def test_the_page_shows_the_groups_smi_live_in_a_browser(
    prefix: str, worker_factory: Callable[..., Worker], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    token = "page-" + prefix
    first = worker_factory(prefix, env={"SMI_API_TOKEN": token})
    second = worker_factory(prefix, env={"SMI_API_TOKEN": token}, app_id=first.app_id)
    first.wait_ready()
    base = f"http://127.0.0.1:{first.web_port}"
    # every page is behind the token, the page's own code too
    for path in ("/", "/assets/page.js", "/page/fleet", "/page/local", f"/page/devices/{DEVICE}"):
        assert status(base + path) == 401 and status(base + path, "wrong") == 401
    assert status(base + "/", basic=("operator", "wrong")) == 401
    assert status(base + "/", basic=("operator", token)) == 200

    browser.get(f"http://operator:wrong@127.0.0.1:{first.web_port}/")  # as a browser asks
    assert not browser.find_elements(By.ID, "main"), "the page served on a wrong token"
    browser.get(f"http://operator:{token}@127.0.0.1:{first.web_port}/")
    wait_for(browser, "the page", lambda: shown(browser, "main"))
    assert not shown(browser, "token-form")  # the browser sends the token it was given
    browser.execute_script("window.notReloaded = true")
    owners = {f"http://127.0.0.1:{w.web_port}" for w in (first, second)}
    wait_for(browser, "both workers owning partitions", lambda: {
        row[1] for row in rows(browser, "#partitions tbody tr")} == owners)
    assert statuses(browser) == {} and feed_kinds(browser) == []

    story = steps(STORY)
    await play(first, story[:4])  # the inventory, then the CPL removes its firmware
    wait_for(browser, "the device suspended", lambda: statuses(browser) == {"Suspended": 1})
    wait_for(browser, "the removal's correction", lambda: feed_kinds(browser) == ["correction"])
    await play(first, story[4:])  # an SR rejected, then SR11.2's response restores it
    wait_for(browser, "the device restored", lambda: statuses(browser) == {"Commissioned": 1})
    wait_for(browser, "both corrections and the rejection", lambda: sorted(
        feed_kinds(browser)) == ["correction", "correction", "rejection"])
    wait_for(browser, "the chart", lambda: browser.find_element(
        By.ID, "chart").get_attribute("data-total") == "2")
    await play(first, steps(REFUSALS))  # each dead letter shown with the input it was
    settings = first.settings()
    wait_for(browser, "the dead letters", lambda: feed_kinds(browser).count("dead letter") == 2)
    wait_for(browser, "the second device", lambda: statuses(browser) == {"Commissioned": 2})
    counted = [get_json(w, "/stats", token)["devices_by_status"] for w in (first, second)]
    assert sum(sum(c.values()) for c in counted) == 2  # the page sums both workers' own
    inputs = [row[4] for row in rows(browser, "#feed tbody tr")]
    assert all(settings.topic("duis.service-requests") + "[" in i for i in inputs[:2]), inputs

    browser.find_element(By.ID, "search-input").send_keys(DEVICE.lower())
    browser.find_element(By.ID, "search-button").click()
    history = wait_for(browser, "the device's history", lambda: rows(
        browser, "#device-history tbody tr"))
    assert [row[2:4] for row in history] == [["sr11.2-response", "duis.device-responses"],
                                             ["cpl-removed", "cpl.entries"]]
    assert all(row[4].isdigit() and row[5].isdigit() for row in history)  # partition, offset
    record = dict(row for row in rows(browser, "#device-record tr"))
    assert record["status"] == "Commissioned" and record["firmware_version"] == "00020130"
    assert text(browser, "device-view").count("Awaited requests (0)") == 1
    policy = dict(row for row in rows(browser, "#policy tr"))
    assert policy["sr11_2_when_suspended"] == "on" and policy["secmp0007"] == "off"
    assert browser.execute_script("return window.notReloaded") is True
    assert not shown(browser, "banner")
    screenshot = Path(os.environ.get("SMI_PAGE_SCREENSHOT") or tmp_path / "page.png")
    assert browser.save_screenshot(str(screenshot.resolve()))


async def test_metrics_for_prometheus(prefix: str, worker_factory: Callable[..., Worker]
                                      ) -> None:
    worker = worker_factory(prefix)
    await play(worker, steps(STORY))
    families = wait_metrics(worker, lambda f: sample(f, "smi_consumer_lag") == 0
                            and sample(f, "smi_table_devices") == 1)
    for family in families.values():
        assert family.documentation, f"{family.name} has no HELP"
    assert sample(families, "smi_corrections", cause="cpl-removed") == 1
    assert sample(families, "smi_corrections", cause="sr11.2-response") == 1
    assert sample(families, "smi_devices", status="Commissioned") == 1
    assert sample(families, "smi_table_devices") == 1
    # every device record decided (and the CPL removal, in each partition group), timed from
    # its record's timestamp
    latency = sample(families, "smi_decision_latency_seconds", suffix="_count")
    assert latency >= 5
    assert sample(families, "smi_decision_latency_seconds", suffix="_bucket",
                  le="30.0") == latency
    assert sample(families, "smi_commit_duration_seconds", suffix="_count") > 0
    lags = {(s.labels["topic"], s.labels["partition"]) for s in
            families["smi_partition_lag"].samples}
    settings = Settings(topic_prefix=prefix)
    assert {(settings.topic("smi.inventory"), str(p)) for p in range(8)} <= lags
    assert {"process_cpu_seconds", "process_resident_memory_bytes",
            "process_open_fds"} <= set(families)
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics") as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def wait_metrics(worker: Worker, ready: Callable[[dict[str, Any]], bool],
                 seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        families = {f.name: f for f in text_string_to_metric_families(
            worker.get_text("/metrics"))}
        if ready(families) or time.monotonic() > deadline:
            return families
        time.sleep(0.5)


def sample(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    family = families[name]
    wanted = name + (suffix or ("_total" if family.type == "counter" else ""))
    return float(sum(s.value for s in family.samples
                     if s.name == wanted and all(s.labels.get(k) == v
                                                 for k, v in labels.items())))

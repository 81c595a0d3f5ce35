"""``smi simulate``: a firmware roll-out over a fleet, through Kafka and a real worker.

The fleet's firmware loses its CPL entry and every meter is Suspended. Suppliers send SR11.1 and
SR11.3 for the new, approved firmware. A simulated device side answers the commands the worker
accepted, losing a share of SR11.3 responses (20% by default, as observed). Supplier systems
follow up a lost response after a timeout: with SR11.2 where the policy allows it while
Suspended, else with an SR11.3 retry. The report counts what the worker's SMI ends up saying.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import topics as t
from streams.core import Policy
from streams.errors import ConfigError
from streams.settings import Settings
from streams.tools.client import Kafka, input_topics
from streams.tools.progress import Progress

MANUFACTURER, METER_MODEL, GPF_MODEL, HARDWARE = "AB01", "010A030B", "020A030B", "0001"
OLD, NEW, GPF_FIRMWARE = "0002012F", "00020130", "00030001"
NEW_HASH = NEW * 8
SUPPLIERS = tuple(f"90-B3-D5-1F-30-01-00-{n:02X}" for n in range(1, 6))
STATUSES = ("Commissioned", "InstalledNotCommissioned", "Decommissioned", "Withdrawn")
STATUS_WEIGHTS = (0.90, 0.06, 0.02, 0.02)


@dataclass
class Meter:
    device_id: str
    device_type: str  # ESME or GSME
    smets: int
    status: str
    supplier: str
    gpf_id: str | None
    losses: tuple[bool, ...] = ()  # per SR11.3 activation: is its response lost?
    firmware: str = OLD  # what the device really runs
    counter: int = 1000
    attempts: int = 0  # SR11.3 the supplier sent so far
    activations: int = 0  # SR11.3 the device received so far
    done: bool = False  # the supplier has had an answer or gave up

    @property
    def terminal(self) -> bool:
        return self.status in ("Decommissioned", "Withdrawn")


@dataclass
class Config:
    devices: int = 1000
    loss: float = 0.2
    seed: int = 105
    follow_up_after: float = 3.0  # seconds without an SR11.3 response
    max_attempts: int = 4  # SR11.3 sends per meter, the first included
    sample_every: float = 0.25
    timeout: float = 600.0


@dataclass
class Report:
    policy: str
    meters: int
    affected: int
    lost_sr11_3_responses: int = 0
    follow_ups: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    wrongly_suspended: int = 0
    firmware_out_of_line: int = 0
    recovered_after: float | None = None
    seconds: float = 0.0
    series: list[tuple[float, int]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "meters": self.meters,
            "affected (suspended by the CPL removal)": self.affected,
            "SR11.3 responses lost": self.lost_sr11_3_responses,
            "follow-up SR11.2": self.follow_ups["11.2"],
            "follow-up SR11.3 retries": self.follow_ups["11.3"],
            "SRs rejected (a read of every meter at the end)": self.rejected,
            "still wrongly Suspended": self.wrongly_suspended,
            "SMI firmware out of line": self.firmware_out_of_line,
            "time to recover (s)": (
                f"{self.recovered_after:.1f}" if self.recovered_after is not None else "never"
            ),
        }


def fleet(config: Config) -> list[Meter]:
    """The same fleet for the same seed: ESMEs and GSMEs (with GPFs), SMETS1 and 2."""
    rng = random.Random(config.seed)
    meters = []
    for n in range(config.devices):
        gsme = rng.random() < 0.4
        meters.append(Meter(
            device_id=_eui(0x01, n),
            device_type="GSME" if gsme else "ESME",
            smets=1 if rng.random() < 0.3 else 2,
            status=rng.choices(STATUSES, STATUS_WEIGHTS)[0],
            supplier=rng.choice(SUPPLIERS),
            gpf_id=_eui(0x02, n) if gsme else None,
            # drawn here, so every policy loses the same responses of the same fleet
            losses=tuple(rng.random() < config.loss for _ in range(config.max_attempts)),
        ))
    return meters


def _eui(kind: int, n: int) -> str:
    return f"00-DB-{kind:02X}-{n >> 24 & 255:02X}-{n >> 16 & 255:02X}-{n >> 8 & 255:02X}-" \
           f"{n & 255:02X}-00"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Simulation:
    """One run: the fleet, the suppliers and the devices, against one worker's topics."""

    def __init__(self, settings: Settings, policy: Policy, config: Config) -> None:
        self.settings, self.policy, self.config = settings, policy, config
        self.meters = {m.device_id: m for m in fleet(config)}
        self.report = Report(policy.name, len(self.meters), 0)
        self.smi: dict[str, tuple[str, str]] = {}  # the SMI as the corrections tell it
        self.follow_ups: dict[str, float] = {}  # device -> when its supplier follows up
        self.started = time.monotonic()

    async def run(self) -> Report:
        self.producer = AIOKafkaProducer(linger_ms=20, **self.settings.kafka_client_options())
        await self.producer.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._set_up()
            self.started = time.monotonic()
            tasks = [asyncio.create_task(c) for c in (
                self._devices(), self._corrections(), self._rejections(), self._sample())]
            await self._roll_out()
            await self._supplier_follow_ups()
            await self._caught_up("finishing")
            await self._reads()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.producer.stop()
        await self._final_counts()
        self.report.seconds = time.monotonic() - self.started
        return self.report

    async def _send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        await self.producer.send(self.settings.topic(topic), orjson.dumps(value),
                                 key=key.encode())

    async def _set_up(self) -> None:
        for model, firmware in ((METER_MODEL, OLD), (METER_MODEL, NEW), (GPF_MODEL, GPF_FIRMWARE)):
            await self._send(t.CPL, f"{MANUFACTURER}:{model}:{HARDWARE}:{firmware}",
                             _cpl(model, firmware, "Active"))
        for meter in self.meters.values():
            if meter.gpf_id:
                await self._send(t.INVENTORY, meter.gpf_id, _inventory(meter, gpf=True))
            await self._send(t.INVENTORY, meter.device_id, _inventory(meter))
            self.smi[meter.device_id] = (meter.status, OLD)
        await self._caught_up("loading the fleet")

    async def _caught_up(self, label: str) -> None:
        await self.producer.flush()
        async with Kafka(self.settings) as kafka:
            topics = input_topics(self.settings)
            total = await kafka.lag(self.settings.app_id, topics)
            if total <= 0:
                return  # nothing to wait for: no line that says so
            progress = Progress(f"{self.policy.name}: {label}", total)
            while (lag := await kafka.lag(self.settings.app_id, topics)) > 0:
                progress.done = total - lag if lag <= total else 0
                progress.advance(0)
                await asyncio.sleep(0.2)
            progress.done = total
            progress.close()

    async def _roll_out(self) -> None:
        await self._send(t.CPL, f"{MANUFACTURER}:{METER_MODEL}:{HARDWARE}:{OLD}",
                         _cpl(METER_MODEL, OLD, "Removed"))
        await self._caught_up("suspending the fleet")
        affected = [m for m in self.meters.values() if not m.terminal]
        self.report.affected = len(affected)
        for meter in affected:
            await self._request(meter, "11.1", firmware_version=NEW)
            await self._request(meter, "11.3", firmware_hash=NEW_HASH)
        await self.producer.flush()

    async def _request(self, meter: Meter, sr: str, **fields: str) -> None:
        meter.counter += 1
        if sr == "11.3":
            meter.attempts += 1
        request_id = f"{meter.supplier}:{meter.device_id}:{meter.counter}"
        await self._send(t.REQUESTS, meter.device_id, {
            "request_id": request_id, "sr": sr, "originator": meter.supplier,
            "device_id": meter.device_id, "at": _now(), **fields})

    async def _devices(self) -> None:
        """The device side: act on each accepted command and answer (or lose the answer)."""
        async for command in self._follow(t.COMMANDS):
            meter = self.meters.get(command["device_id"])
            if meter is None or command["sr"] not in ("11.2", "11.3"):
                continue
            if command["sr"] == "11.3":
                meter.firmware = NEW
                meter.activations += 1
                if meter.losses[min(meter.activations, len(meter.losses)) - 1]:
                    self.report.lost_sr11_3_responses += 1
                    due = time.monotonic() + self.config.follow_up_after
                    self.follow_ups[meter.device_id] = due
                    continue
            meter.done = True
            self.follow_ups.pop(meter.device_id, None)
            await self._respond(meter, command)

    async def _respond(self, meter: Meter, command: dict[str, Any]) -> None:
        originator, target, counter = command["request_id"].split(":")
        response = {"response_id": f"{target}:{originator}:{counter}", "sr": command["sr"],
                    "device_id": meter.device_id, "firmware_version": meter.firmware,
                    "at": _now()}
        if command["sr"] == "11.3":
            response["outcome"] = 0
        await self._send(t.RESPONSES, meter.device_id, response)

    async def _supplier_follow_ups(self) -> None:
        """Follow up lost SR11.3 responses until every meter is answered or given up."""
        deadline = time.monotonic() + self.config.timeout
        progress = Progress(f"{self.policy.name}: meters answered", self.report.affected)
        while time.monotonic() < deadline:
            waiting = sum(1 for m in self.meters.values() if not (m.done or m.terminal))
            progress.done = self.report.affected - waiting
            progress.advance(0)
            if not waiting:
                break
            now = time.monotonic()
            for device_id, due in list(self.follow_ups.items()):
                if due <= now:
                    del self.follow_ups[device_id]
                    await self._follow_up(self.meters[device_id])
            await self.producer.flush()
            await asyncio.sleep(0.1)
        progress.close()

    async def _follow_up(self, meter: Meter) -> None:
        if self.policy.sr11_2_when_suspended:
            self.report.follow_ups["11.2"] += 1
            await self._request(meter, "11.2")
        elif meter.attempts < self.config.max_attempts:
            self.report.follow_ups["11.3"] += 1
            await self._request(meter, "11.3", firmware_hash=NEW_HASH)
        else:
            meter.done = True  # the supplier gives up; another firmware update would be next

    async def _reads(self) -> None:
        """Afterwards each supplier reads each of its meters (SR4.1.1): Suspended ones refuse."""
        for meter in self.meters.values():
            if not meter.terminal:
                await self._request(meter, "4.1.1")
        await self._caught_up("reading every meter")
        await asyncio.sleep(2 * self.config.sample_every + 0.5)  # let the readers catch up

    async def _follow(self, topic: str) -> AsyncIterator[dict[str, Any]]:
        consumer = AIOKafkaConsumer(self.settings.topic(topic), auto_offset_reset="earliest",
                                    enable_auto_commit=False, isolation_level="read_committed",
                                    **self.settings.kafka_client_options())
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                for messages in batch.values():
                    for m in messages:
                        yield orjson.loads(m.value)
        finally:
            await consumer.stop()

    async def _corrections(self) -> None:
        async for c in self._follow(t.CORRECTIONS):
            self.smi[c["device_id"]] = (c["to_status"], c["to_firmware"])

    async def _rejections(self) -> None:
        async for _ in self._follow(t.REJECTIONS):
            self.report.rejected += 1

    async def _sample(self) -> None:
        while True:
            wrong = self._wrongly_suspended(self.smi)
            elapsed = time.monotonic() - self.started
            self.report.series.append((round(elapsed, 2), wrong))
            if wrong == 0 and self.report.recovered_after is None and self._all_answered():
                self.report.recovered_after = elapsed
            await asyncio.sleep(self.config.sample_every)

    def _all_answered(self) -> bool:
        return all(m.firmware == NEW for m in self.meters.values() if not m.terminal)

    def _wrongly_suspended(self, smi: dict[str, tuple[str, str]]) -> int:
        """Meters the SMI holds Suspended although they run approved firmware."""
        return sum(
            1 for m in self.meters.values()
            if m.firmware == NEW and smi.get(m.device_id, ("", ""))[0] == "Suspended"
        )

    async def _final_counts(self) -> None:
        """The final figures, from the worker's own SMI table (its changelog topic)."""
        async with Kafka(self.settings) as kafka:
            records = await kafka.smi(self.settings)
        smi = {k: (v["status"], v["firmware_version"]) for k, v in records.items()}
        self.report.wrongly_suspended = self._wrongly_suspended(smi)
        self.report.firmware_out_of_line = sum(
            1 for m in self.meters.values() if smi.get(m.device_id, ("", ""))[1] != m.firmware
        )
        if self.report.wrongly_suspended:
            self.report.recovered_after = None


def _cpl(model: str, firmware: str, status: str) -> dict[str, Any]:
    return {"manufacturer": MANUFACTURER, "model": model, "hardware_version": HARDWARE,
            "firmware_version": firmware, "firmware_hash": firmware * 8, "status": status,
            "at": _now()}


def _inventory(meter: Meter, gpf: bool = False) -> dict[str, Any]:
    return {
        "device_id": meter.gpf_id if gpf else meter.device_id,
        "device_type": "GPF" if gpf else meter.device_type,
        "smets": meter.smets,
        "manufacturer": MANUFACTURER,
        "model": GPF_MODEL if gpf else METER_MODEL,
        "hardware_version": HARDWARE,
        "firmware_version": GPF_FIRMWARE if gpf else OLD,
        "status": "Commissioned" if gpf else meter.status,
        "supplier": meter.supplier,
        "gpf_id": None if gpf else meter.gpf_id,
        "at": _now(),
    }


def table(reports: list[Report]) -> str:
    """The reports side by side, as a markdown table."""
    rows = [r.row() for r in reports]
    labels = [k for k in rows[0] if k != "policy"]
    head = "| | " + " | ".join(r["policy"] for r in rows) + " |"
    rule = "|---" * (len(rows) + 1) + "|"
    body = [f"| {label} | " + " | ".join(str(r[label]) for r in rows) + " |" for label in labels]
    return "\n".join([head, rule, *body]) + "\n"


def need_matplotlib() -> None:
    """The chart comes last: say it cannot be drawn before a run of minutes, not after."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("the chart needs matplotlib: pip install 'smi-streams[simulate]'")


def chart(reports: list[Report], config: Config, path: Path) -> Path:
    """A PNG of wrongly Suspended meters over time, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for report in reports:
        xs = [x for x, _ in report.series]
        ys = [y for _, y in report.series]
        axes.step(xs, ys, where="post", label=f"{report.policy} (end: {report.wrongly_suspended})")
    axes.set_xlabel("seconds since the CPL removal")
    axes.set_ylabel("meters wrongly Suspended")
    first_losses = sum(1 for m in fleet(config) if not m.terminal and m.losses[0])
    axes.set_title(f"Firmware roll-out over {reports[0].meters:,} meters: "
                   f"{first_losses:,} first SR11.3 responses lost")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def simulate(base: Settings, names: list[str], config: Config, out: Path) -> list[Report]:
    """Run the same fleet under each named policy, each with its own worker and topics."""
    from streams.tools.replay import POLICY_SWITCHES
    from streams.tools.supervise import start_worker, stop_worker

    need_matplotlib()
    reports = []
    stamp = time.strftime("%Y%m%d%H%M%S")
    for name in names:
        sr11_2, retry = POLICY_SWITCHES[name]
        settings = base.model_copy(update={
            "app_id": f"smi-sim-{stamp}-{name}", "topic_prefix": f"sim-{stamp}-{name}.",
            "sr11_2_when_suspended": sr11_2, "sr11_3_retry_updates_smi": retry,
            "commit_interval": min(base.commit_interval, 0.2),
        })
        worker = start_worker(settings)
        try:
            report = asyncio.run(Simulation(settings, settings.policy, config).run())
        finally:
            stop_worker(worker)
        reports.append(report)
        print(table([report]), file=sys.stderr)
    write(reports, config, out)
    return reports


def write(reports: list[Report], config: Config, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulation.md").write_text(table(reports))
    (out / "simulation.json").write_bytes(orjson.dumps(
        [{**r.row(), "series": r.series} for r in reports], option=orjson.OPT_INDENT_2))
    chart(reports, config, out / "wrongly-suspended.png")

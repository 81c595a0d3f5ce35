"""A seeded, realistic mix of input messages, for volume tests and the benchmark.

After the CPL and an inventory record per device: about 60% service requests, 35% device
responses, 5% inventory and CPL changes, and a chosen share of broken messages (invalid JSON,
wrong types, unknown SRs, bad IDs, oversized values), each marked so a test can count them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from streams import topics as t

MANUFACTURER, MODEL, HARDWARE = "AB01", "010A030B", "0001"
FIRMWARES = ("0002012F", "00020130", "00020131")
SUPPLIERS = tuple(f"90-B3-D5-1F-30-01-00-{n:02X}" for n in range(1, 9))
AT = "2026-11-24T08:00:00Z"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # contract name
    key: bytes
    value: bytes
    broken: bool = False


def device_id(n: int) -> str:
    return f"00-DB-03-{n >> 24 & 255:02X}-{n >> 16 & 255:02X}-{n >> 8 & 255:02X}-{n & 255:02X}-00"


def supplier_of(n: int) -> str:
    return SUPPLIERS[n % len(SUPPLIERS)]


def cpl(firmware: str, status: str = "Active") -> Message:
    key = f"{MANUFACTURER}:{MODEL}:{HARDWARE}:{firmware}"
    value = {"manufacturer": MANUFACTURER, "model": MODEL, "hardware_version": HARDWARE,
             "firmware_version": firmware, "firmware_hash": firmware * 8, "status": status,
             "at": AT}
    return Message(t.CPL, key.encode(), orjson.dumps(value))


def inventory(n: int, firmware: str = FIRMWARES[0]) -> Message:
    value = {"device_id": device_id(n), "device_type": "GSME" if n % 3 == 0 else "ESME",
             "smets": 2, "manufacturer": MANUFACTURER, "model": MODEL,
             "hardware_version": HARDWARE, "firmware_version": firmware,
             "status": "Commissioned", "supplier": supplier_of(n), "gpf_id": None, "at": AT}
    return Message(t.INVENTORY, device_id(n).encode(), orjson.dumps(value))


UNLISTED = "0002FFFF"  # reported by some responses: no CPL entry, so it suspends


class Workload:
    """``stable=True`` keeps to SR11.2 and SR11.3 (a new image each time, so no retries) and
    their responses: input whose outcome does not depend on how a worker interleaves topics,
    for comparing runs."""

    def __init__(self, devices: int, seed: int = 6, broken: float = 0.0,
                 stable: bool = False) -> None:
        self.devices, self.broken, self.stable = devices, broken, stable
        self.rng = random.Random(seed)
        self.counter = 0
        self.sent: list[tuple[str, str]] = []  # recent (request_id, sr) of SR11.2 and SR11.3

    def setup(self) -> Iterator[Message]:
        """The CPL, then every device's inventory record."""
        for firmware in FIRMWARES:
            yield cpl(firmware)
        for n in range(self.devices):
            yield inventory(n)

    def events(self, count: int, cpl_changes: bool = True) -> Iterator[Message]:
        """``cpl_changes=False`` leaves out CPL changes, whose cost grows with the fleet (a
        removal suspends every device on the firmware), for measuring what does not."""
        for _ in range(count):
            if self.rng.random() < self.broken:
                yield self._broken()
                continue
            roll = self.rng.random()
            if self.stable:
                yield self._response() if roll < 0.45 and self.sent else self._request()
            elif roll < 0.60:
                yield self._request()
            elif roll < 0.95 and self.sent:
                yield self._response()
            elif roll < 0.999 or not cpl_changes:
                yield inventory(self.rng.randrange(self.devices), self.rng.choice(FIRMWARES))
            else:
                yield cpl(self.rng.choice(FIRMWARES), self.rng.choice(("Active", "Removed")))

    def _request(self) -> Message:
        n = self.rng.randrange(self.devices)
        weights = (50, 50, 0, 0, 0) if self.stable else (30, 15, 40, 5, 10)
        sr = self.rng.choices(("11.2", "11.3", "4.1.1", "11.1", "8.2"), weights)[0]
        # one SR in fifty comes from a supplier that is not responsible for the device
        originator = supplier_of(n + 1) if self.rng.random() < 0.02 else supplier_of(n)
        self.counter += 1
        request_id = f"{originator}:{device_id(n)}:{self.counter}"
        value: dict[str, object] = {"request_id": request_id, "sr": sr, "originator": originator,
                                    "device_id": device_id(n), "at": AT}
        if sr == "11.3":
            image = f"{self.counter:08X}" if self.stable else self.rng.choice(FIRMWARES)
            value["firmware_hash"] = image * 8
        if sr == "11.1":
            value["firmware_version"] = self.rng.choice(FIRMWARES)
        if sr in ("11.2", "11.3"):
            self.sent.append((request_id, sr))
            del self.sent[:-5000]
        if self.stable and len(self.sent) > 200:
            self.sent.pop(0)  # answered at most once each: responses follow their requests
        return Message(t.REQUESTS, device_id(n).encode(), orjson.dumps(value))

    def _response(self) -> Message:
        index = self.rng.randrange(len(self.sent))
        request_id, sr = self.sent.pop(index) if self.stable else self.sent[index]
        originator, target, counter = request_id.split(":")
        value: dict[str, object] = {"response_id": f"{target}:{originator}:{counter}", "sr": sr,
                                    "device_id": target, "at": AT,
                                    "firmware_version": self.rng.choice((*FIRMWARES, UNLISTED))}
        if sr == "11.3":
            value["outcome"] = self.rng.choice((0, 0, 0, 1, 2, 3))
        return Message(t.RESPONSES, target.encode(), orjson.dumps(value))

    def _broken(self) -> Message:
        n = self.rng.randrange(self.devices)
        key = device_id(n).encode()
        kind = self.rng.randrange(5)
        good = orjson.loads(self._request().value)
        if kind == 0:
            value = b'{"request_id": "' + device_id(n).encode() + b'", not json'
        elif kind == 1:
            value = orjson.dumps({**good, "at": 17, "sr": 11.2})  # wrong types
        elif kind == 2:
            value = orjson.dumps({**good, "sr": "READ-EVERYTHING"})  # unknown SR
        elif kind == 3:
            value = orjson.dumps({**good, "device_id": "00-DB-12-34"})  # bad ID
        else:
            value = orjson.dumps({**good, "padding": "x" * 70_000})  # oversized
        return Message(t.REQUESTS, key, value, broken=True)

"""Which devices of a partition a removal of a given CPL entry could suspend.

Without it a removal read every record of the table (on RocksDB, decoding all of them) once
per partition, which stalled the event loop for seconds. The index lives in memory, eight
bytes per entry (the EUI-64 as an integer), and holds only devices a removal would change
(``rules.removal_can_suspend``): a write adds a device when it starts running a firmware or
leaves Suspended, and a removal takes the whole list for its entry, since afterwards each is
suspended or has moved on. It is only a list of candidates: the caller checks each against
the table, so an entry left behind costs a lookup, never a wrong suspension. It is built from
the table on the first removal after a rebalance and kept up to date by every write after.
"""

from __future__ import annotations

import asyncio
from array import array
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from schemas.models import cpl_key
from streams.backends import is_device
from streams.core.records import Device
from streams.core.rules import removal_can_suspend

Key = tuple[int, str]  # (partition, MANUFACTURER:MODEL:HARDWARE:FIRMWARE)

YIELD_EVERY = 5_000  # records scanned between two turns of the event loop while building


def firmware_key(value: dict[str, Any]) -> str:
    return cpl_key(value["manufacturer"], value["model"], value["hardware_version"],
                   value["firmware_version"])


def pack(device_id: str) -> int:
    return int(device_id.replace("-", ""), 16)


def unpack(number: int) -> str:
    t = f"{number:016X}"  # sliced by hand: a join over a generator took twice as long
    return f"{t[0:2]}-{t[2:4]}-{t[4:6]}-{t[6:8]}-{t[8:10]}-{t[10:12]}-{t[12:14]}-{t[14:16]}"


class DevicesByFirmware:
    def __init__(self) -> None:
        self._entries: defaultdict[Key, array[int]] = defaultdict(lambda: array("Q"))
        self.built = False
        self._generation = 0  # a rebalance during a build makes that build stale

    def clear(self) -> None:
        """Forget everything: after a rebalance the table holds other partitions."""
        self._entries.clear()
        self.built = False
        self._generation += 1

    async def build(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        self._entries.clear()
        generation = self._generation
        for count, (device_id, value) in enumerate(items, 1):
            if is_device(device_id) and _suspendable(value):
                self._entries[(value["partition"], firmware_key(value))].append(pack(device_id))
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self.built = generation == self._generation

    def on_write(self, partition: int, device_id: str, before: Device | None,
                 after: Device) -> None:
        """Index a device that a removal could now suspend and could not before."""
        if not self.built or not removal_can_suspend(after.status, after.device_type):
            return
        key = after.firmware_key
        if (before is None or not removal_can_suspend(before.status, before.device_type)
                or before.firmware_key != key):
            self._entries[(partition, key)].append(pack(device_id))

    def take(self, partition: int, key: str) -> list[str]:
        """The devices a removal of entry ``key`` could suspend on this partition, forgotten:
        after the removal each is suspended or has moved on (and a later write adds it back)."""
        entries = self._entries.pop((partition, key), None)
        return [unpack(n) for n in sorted(set(entries))] if entries else []


def _suspendable(value: dict[str, Any]) -> bool:
    return removal_can_suspend(value["status"], value["device_type"])

"""Which devices of a partition run a given firmware: what a CPL removal has to touch.

Without it a removal read every record of the table (on RocksDB, decoding all of them) once
per partition, which stalled the event loop for seconds. The index lives in memory, eight
bytes per entry (the EUI-64 as an integer), and is only a list of candidates: the caller
checks each against the table, so an entry left behind by a later firmware change costs a
lookup, never a wrong suspension. It is built from the table on the first removal after a
rebalance and kept up to date by every write afterwards.
"""

from __future__ import annotations

import asyncio
from array import array
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from schemas.models import cpl_key

Key = tuple[int, str]  # (partition, MANUFACTURER:MODEL:HARDWARE:FIRMWARE)

YIELD_EVERY = 5_000  # records scanned between two turns of the event loop while building


def firmware_key(value: dict[str, Any]) -> str:
    return cpl_key(value["manufacturer"], value["model"], value["hardware_version"],
                   value["firmware_version"])


def pack(device_id: str) -> int:
    return int(device_id.replace("-", ""), 16)


def unpack(number: int) -> str:
    text = f"{number:016X}"
    return "-".join(text[i:i + 2] for i in range(0, 16, 2))


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
            self._entries[(value["partition"], firmware_key(value))].append(pack(device_id))
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self.built = generation == self._generation

    def add(self, partition: int, device_id: str, value: dict[str, Any]) -> None:
        if self.built:
            self._entries[(partition, firmware_key(value))].append(pack(device_id))

    def candidates(self, partition: int, key: str) -> list[str]:
        """Devices that ran this firmware on this partition; compacted as it is read."""
        entries = self._entries.get((partition, key))
        if not entries:
            return []
        unique = sorted(set(entries))
        self._entries[(partition, key)] = array("Q", unique)
        return [unpack(n) for n in unique]

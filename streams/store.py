"""The worker's record store (``streams.decider.RecordStore``): the SMI table, with the
recently decided records in front of it and the CPL removal index beside it. Each write's
changelog record is held by the emitter and goes out with the next commit."""

from __future__ import annotations

from typing import Any

from faust.types import TableT

from schemas.codec import dumps
from schemas.models import CplEntry
from streams.backends import backend_of
from streams.core.records import Device
from streams.emit import Emitter
from streams.index import DevicesByFirmware
from streams.tables import RecentRecords


class TableRecords:
    def __init__(self, table: TableT[str, dict[str, Any]], recent: RecentRecords,
                 by_firmware: DevicesByFirmware, emitter: Emitter) -> None:
        self.table = table
        self.backend = backend_of(table)  # the store faust made for the table, picked once
        self.recent = recent
        self.by_firmware = by_firmware
        self.emitter = emitter

    def read(self, partition: int, key: str, recent: bool = True) -> Device | None:
        """From the recent records, else from the table (and kept among the recent ones,
        unless ``recent`` is False)."""
        record = self.recent.get(partition, key)
        if record is None and (stored := self.backend.get(partition, key)) is not None:
            record = Device.from_dict(stored)
            if recent:
                self.recent.put(partition, key, record)
        return record

    def write(self, partition: int, key: str, before: Device | None, record: Device,
              recent: bool = True) -> None:
        value = record.to_dict(partition)
        raw = dumps(value)  # encoded once, for the store and the changelog
        self.backend.put(partition, key, value, raw)
        if recent:
            self.recent.put(partition, key, record)
        else:
            self.recent.discard(partition, key)
        self.emitter.add_change(partition, key.encode(), raw)
        self.by_firmware.on_write(partition, key, before, record)

    async def prepare_removal(self) -> None:
        """Build the removal index from the table, once after each rebalance."""
        if not self.by_firmware.built:
            await self.by_firmware.build(self.table.items())

    def covered(self, partition: int, entry: CplEntry) -> list[str]:
        return self.by_firmware.take(partition, entry.key)

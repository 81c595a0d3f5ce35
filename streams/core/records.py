"""The SMI record as the rules see it, and its form in the table."""

from __future__ import annotations

from typing import Any, NamedTuple

from schemas.models import Inventory, Source, cpl_key

TERMINAL = frozenset({"Decommissioned", "Withdrawn"})
SUSPENDED = "Suspended"
# Restored when an Inventory message put a device in Suspended without saying what it was.
DEFAULT_STATUS_AFTER_SUSPENSION = "Commissioned"


class Pending(NamedTuple):
    """An accepted SR11.2 or SR11.3 still waiting for its response."""

    request_id: str
    sr: str
    firmware_hash: str | None = None
    retry: bool = False
    at: float | None = None  # the request's own time, epoch seconds (None: kept before ages)


class Position(NamedTuple):
    """Where an input was read, and its own ID: what a correction's ``source`` says. A plain
    tuple, made for every event; the ``Source`` model only for the few outputs that carry it."""

    topic: str
    partition: int
    offset: int
    id: str | None = None

    @classmethod
    def of(cls, source: Source) -> Position:
        return cls(source.topic, source.partition, source.offset, source.id)

    def source(self) -> Source:
        return Source(topic=self.topic, partition=self.partition, offset=self.offset,
                      id=self.id)

    def label(self) -> str:
        """As ``smi device`` shows it: ``topic[partition]@offset id``."""
        return f"{self.topic}[{self.partition}]@{self.offset} {self.id or ''}".strip()


class Change(NamedTuple):
    """One correction of this record, kept for ``smi device``: what changed and why."""

    at: str
    from_status: str
    to_status: str
    from_firmware: str
    to_firmware: str
    cause: str
    source: str  # "topic[partition]@offset id"


HISTORY_LIMIT = 10


class Early(NamedTuple):
    """A response read before its request: Kafka orders each topic's partitions, not the
    topics against each other, so a response can overtake its request in a backlog."""

    request_id: str
    response: dict[str, Any]  # the DeviceResponse, as JSON values
    source: dict[str, Any]

    def answers(self, request_id: str, sr: str) -> bool:
        """Whether this responds to request ``request_id`` of ``sr``: a request is its ID and
        its SR."""
        return self.request_id == request_id and self.response.get("sr") == sr


class Device(NamedTuple):
    device_id: str
    device_type: str
    smets: int
    manufacturer: str
    model: str
    hardware_version: str
    firmware_version: str
    status: str
    supplier: str
    gpf_id: str | None = None
    status_before_suspension: str | None = None
    pending: tuple[Pending, ...] = ()
    # IDs of GPF responses already compared, so a duplicate raises no second N52.
    gpf_responses_seen: tuple[str, ...] = ()
    # recent corrections, as JSON values: only ever appended to and shown, so not decoded
    history: tuple[dict[str, str], ...] = ()
    early: tuple[Early, ...] = ()
    # (request ID, SR) of requests no longer awaited (answered, expired or pushed out): a copy
    # of one of them, or of its response, changes nothing
    closed: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_inventory(cls, inv: Inventory, previous: Device | None) -> Device:
        before: str | None = inv.status_before_suspension
        if inv.status == SUSPENDED and before is None:
            before = _status_before(previous)
        return cls(
            device_id=inv.device_id,
            device_type=inv.device_type,
            smets=inv.smets,
            manufacturer=inv.manufacturer,
            model=inv.model,
            hardware_version=inv.hardware_version,
            firmware_version=inv.firmware_version,
            status=inv.status,
            supplier=inv.supplier,
            gpf_id=inv.gpf_id,
            status_before_suspension=before if inv.status == SUSPENDED else None,
            pending=previous.pending if previous else (),
            gpf_responses_seen=previous.gpf_responses_seen if previous else (),
            history=previous.history if previous else (),
            early=previous.early if previous else (),
            closed=previous.closed if previous else (),
        )

    @property
    def firmware_key(self) -> str:
        """The key of the CPL entry for the firmware it runs."""
        return cpl_key(self.manufacturer, self.model, self.hardware_version,
                       self.firmware_version)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def with_firmware(self, version: str) -> Device:
        return self._replace(firmware_version=version)

    def suspended(self) -> Device:
        if self.status == SUSPENDED:
            return self
        return self._replace(status=SUSPENDED, status_before_suspension=self.status)

    def restored(self) -> Device:
        if self.status != SUSPENDED:
            return self
        before = self.status_before_suspension or DEFAULT_STATUS_AFTER_SUSPENSION
        return self._replace(status=before, status_before_suspension=None)

    def with_change(self, change: Change) -> Device:
        return self._replace(history=(*self.history, change._asdict())[-HISTORY_LIMIT:])

    def to_dict(self, partition: int) -> dict[str, Any]:
        """The table value; ``partition`` says which input partition owns the device."""
        return {
            "device_id": self.device_id,
            "device_type": self.device_type,
            "smets": self.smets,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "hardware_version": self.hardware_version,
            "firmware_version": self.firmware_version,
            "status": self.status,
            "status_before_suspension": self.status_before_suspension,
            "supplier": self.supplier,
            "gpf_id": self.gpf_id,
            "pending": [list(p) for p in self.pending],
            "gpf_responses_seen": list(self.gpf_responses_seen),
            "history": list(self.history),
            "early": [{"request_id": e.request_id, "response": e.response, "source": e.source}
                      for e in self.early],
            "closed": [list(c) for c in self.closed],
            "partition": partition,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Device:
        # positional, in field order: the table is read once per event
        get = d.get
        return cls(
            d["device_id"], d["device_type"], d["smets"], d["manufacturer"], d["model"],
            d["hardware_version"], d["firmware_version"], d["status"], d["supplier"],
            get("gpf_id"), get("status_before_suspension"),
            tuple(Pending(*p) for p in get("pending") or ()),  # older records: 4 fields
            tuple(get("gpf_responses_seen") or ()),
            tuple(get("history") or ()),
            tuple(Early(**e) for e in early) if (early := get("early")) else (),
            tuple(tuple(c) for c in get("closed") or ()),
        )


def _status_before(previous: Device | None) -> str:
    """What an inventory record that says Suspended without the status before it leaves to
    come back to: what the record had saved (or its status, if it was not suspended), so that
    a restatement never turns an InstalledNotCommissioned or Pending meter into a
    Commissioned one; Commissioned for a device not seen before."""
    if previous is None or previous.terminal:
        return DEFAULT_STATUS_AFTER_SUSPENSION
    if previous.status == SUSPENDED:
        return previous.status_before_suspension or DEFAULT_STATUS_AFTER_SUSPENSION
    return previous.status

"""The step per input record that the worker and ``smi replay`` both drive.

Decode the record, read the device's record, :func:`streams.core.decide`, write the new
record, hand the outputs on; or dead-letter what cannot be read. Nothing here knows Kafka or
faust: a :class:`RecordStore` keeps the records (the worker's SMI table, or replay's dict) and
an :class:`Outputs` takes what goes out (the worker's emitter and metrics, or replay's
counts). The caller decides the order (``streams/order.py`` live, a timestamp merge in
replay) and the CPL each record is decided against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from schemas.codec import decode_input
from schemas.models import CplEntry, CplRemoval, DeadLetter, Event, Source, device_key, source_id
from streams import topics as t
from streams.core import Decision, Device, Position, decide, rules
from streams.core.decide import Output, reject
from streams.core.policy import Policy
from streams.errors import InvalidEvent

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
REMOVAL_CHUNK = 1_000  # devices a CPL removal suspends between two turns of the event loop


class Incoming(Protocol):
    """What is read of an input message: faust's Message and aiokafka's ConsumerRecord both."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RecordStore(Protocol):
    """Where the decider reads and writes device records, by partition and device ID.
    ``recent`` is False for the devices of a mass change (a CPL removal), which a store that
    keeps recently used records should not keep for them."""

    def read(self, partition: int, key: str, recent: bool = True) -> Device | None: ...
    def write(self, partition: int, key: str, before: Device | None, record: Device,
              recent: bool = True) -> None: ...
    def covered(self, partition: int, entry: CplEntry) -> list[str]:
        """The devices of ``partition`` a removal of ``entry`` may suspend (a superset)."""
        ...


class Outputs(Protocol):
    """What goes out, by the partition of the input that caused it (a dead letter also by the
    contract name of its input), and what became of each input."""

    def emit(self, outputs: Sequence[Output], partition: int) -> None: ...
    def emit_dead_letter(self, outputs: Sequence[Output], partition: int, name: str) -> None: ...
    def outcome(self, name: str, outcome: str) -> None: ...


class Decider:
    def __init__(self, policy: Policy, records: RecordStore, outputs: Outputs,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 warn: bool = True) -> None:
        self.policy = policy
        self.records = records
        self.outputs = outputs
        self.now = now
        self.warn = warn  # log each dead letter (the worker does; a replay only counts them)

    def on_record(self, message: Incoming, name: str, cpl: Mapping[str, Any]) -> None:
        """A record of a device topic (``name``: its name in the contract), decided where it
        was read."""
        self.on_decoded(message, name, self.decode(message, name), cpl, message.partition)

    def decode(self, message: Incoming, name: str) -> Event | InvalidEvent:
        """The event a device record carries, or why it carries none. The message key is not
        checked: the payload names the device, and the key only placed the record."""
        try:
            return decode_input(name, message.key, message.value, MAX_MESSAGE_BYTES)
        except InvalidEvent as exc:
            return exc

    def on_decoded(self, message: Incoming, name: str, decoded: Event | InvalidEvent,
                   cpl: Mapping[str, Any], partition: int) -> None:
        """Decide a decoded record against the records of ``partition`` (its device's home),
        or dead-letter it."""
        if isinstance(decoded, InvalidEvent):
            self.dead_letter(message, name, decoded, partition)
        else:
            self.decide_one(message, name, decoded, cpl, partition)

    def on_cpl(self, message: Incoming) -> CplEntry | None:
        """A CPL message's entry, or None once it is dead-lettered."""
        try:
            entry = decode_input(t.CPL, message.key, message.value, MAX_MESSAGE_BYTES)
        except InvalidEvent as exc:
            self.dead_letter(message, t.CPL, exc)
            return None
        assert isinstance(entry, CplEntry)
        self.outputs.outcome(t.CPL, f"cpl:{entry.status}")
        return entry

    def decide_one(self, message: Incoming, name: str, event: Event,
                   cpl: Mapping[str, Any], partition: int) -> None:
        key = device_key(event)
        at = Position(name, message.partition, message.offset, source_id(event))
        try:
            record = self.records.read(partition, key)
            decision = decide(record, event, cpl, self.policy, at, self.now())
        except Exception as exc:  # a bug must not stop the worker: keep the message
            log.exception("no decision for %s[%d]@%d", message.topic, message.partition,
                          message.offset)
            self.dead_letter(message, name, InvalidEvent(f"internal error: {exc!r}"), partition)
            return
        self.apply(decision, key, partition, record)
        self.outputs.outcome(name, decision.outcome)

    def apply(self, decision: Decision, key: str, partition: int, before: Device | None,
              recent: bool = True) -> None:
        if decision.record is not None:
            self.records.write(partition, key, before, decision.record, recent)
        self.outputs.emit(decision.outputs, partition)

    def apply_removal(self, entry: CplEntry, source: Source, partition: int,
                      cpl: Mapping[str, Any]) -> None:
        """Suspend the devices of ``partition`` that run the removed entry's firmware."""
        for _ in self.removing(entry, source, partition, cpl):
            pass

    def removing(self, entry: CplEntry, source: Source, partition: int,
                 cpl: Mapping[str, Any]) -> Iterator[int]:
        """:meth:`apply_removal` a chunk at a time: it yields after every
        :data:`REMOVAL_CHUNK` devices, so that a caller with an event loop can let it turn
        (a removal over a million devices takes minutes)."""
        removal = CplRemoval(entry=entry, source=source)
        at, now = Position.of(source), self.now()
        for count, device_id in enumerate(self.records.covered(partition, entry), 1):
            self._suspend(removal, at, device_id, partition, cpl, now)
            if count % REMOVAL_CHUNK == 0:
                yield count

    def _suspend(self, removal: CplRemoval, at: Position, device_id: str, partition: int,
                 cpl: Mapping[str, Any], now: datetime) -> None:
        record = self.records.read(partition, device_id, recent=False)
        if record is None or record.firmware_key != removal.entry.key:
            return  # moved on since it was indexed
        if not rules.removal_can_suspend(record.status, record.device_type):
            return
        decision = decide(record, removal, cpl, self.policy, at, now)
        self.apply(decision, device_id, partition, record, recent=False)

    def dead_letter(self, message: Incoming, name: str, error: InvalidEvent,
                    partition: int | None = None) -> None:
        """A dead letter (and a rejection for a readable request), sent with the outputs of
        ``partition`` (by default the message's own)."""
        if self.warn:
            log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition,
                        message.offset, error)
        key = message.key.decode(errors="replace") if message.key is not None else None
        letter = DeadLetter(topic=name, partition=message.partition, offset=message.offset,
                            key=key, value=_as_text(message.value), error=str(error),
                            at=self.now())
        outputs: list[Output] = [(t.DEADLETTER, key or "", letter)]
        if name == t.REQUESTS and error.request_id:
            _, _, rejection = reject(error.request_id, error.device_id, error.sr,
                                     "invalid-request", self.policy, self.now())
            # keyed like the input, so that under exactly_once it commits with the input's
            # partition (faust picks the transaction by the output's partition)
            outputs.append((t.REJECTIONS, key or error.request_id, rejection))
        where = message.partition if partition is None else partition
        self.outputs.emit_dead_letter(outputs, where, name)
        self.outputs.outcome(name, "dead-lettered")


def _as_text(value: bytes | None) -> str:
    if value is None:
        return ""
    text = value[:MAX_MESSAGE_BYTES].decode("utf-8", errors="replace")
    return text if len(value) <= MAX_MESSAGE_BYTES else text + f"... ({len(value)} bytes)"

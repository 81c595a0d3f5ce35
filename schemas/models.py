"""Pydantic models of the contract (docs/contract.md), one per topic payload.

Inputs are strict where a wrong value would mislead a rule (IDs, versions, hashes, enums) and
ignore fields they do not know, as the contract asks. Device and user IDs are EUI-64 and are
accepted in either case and stored upper case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from schemas import topics

# Checked by pydantic-core's own patterns, not Python validators (a third of the cost of
# decoding): each pattern accepts either case and ``to_upper`` stores upper case. A pattern's
# description words its error (``schemas.codec.describe``).
EUI64_PATTERN = "^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}$"
SR_PATTERN = "^[0-9]{1,2}(\\.[0-9]{1,2}){1,2}$"
PATTERN_DESCRIPTIONS: dict[str, str] = {}


def _text(pattern: str, what: str, upper: bool = True, max_length: int | None = None
          ) -> tuple[StringConstraints, WithJsonSchema]:
    """Validation and JSON Schema for a text field of a given pattern."""
    PATTERN_DESCRIPTIONS[pattern] = what
    schema = {"type": "string", "pattern": pattern, "description": what}
    return (StringConstraints(pattern=pattern, to_upper=upper, max_length=max_length),
            WithJsonSchema(schema))


_EUI64 = _text(EUI64_PATTERN, "an EUI-64: eight hex octets joined by hyphens, such as "
               "00-DB-12-34-56-78-90-A0 (stored upper case)")
_FIRMWARE = _text("^[0-9A-Fa-f]{8}$", "a firmware version: 8 hex digits such as 0002012F")
_HASH = _text("^[0-9A-Fa-f]{64}$", "a firmware image hash: 64 hex digits")
_HEX_ID = _text("^[0-9A-Fa-f]{2,16}$", "a hex identifier of 2 to 16 digits")
_SR = _text(SR_PATTERN, "a Service Reference Variant such as '11.2' or '4.1.1'", upper=False,
            max_length=8)

EUI64 = Annotated[str, _EUI64[0], _EUI64[1]]
FirmwareVersion = Annotated[str, _FIRMWARE[0], _FIRMWARE[1]]
ImageHash = Annotated[str, _HASH[0], _HASH[1]]
HexId = Annotated[str, _HEX_ID[0], _HEX_ID[1]]
ServiceReference = Annotated[str, _SR[0], _SR[1]]

# A few integers, not a ``Literal``: pydantic matches a Literal by equality even when strict,
# so JSON ``false`` would pass as 0 (an SR11.3's success) and ``1.0`` as 1; a strict int
# refuses both. The JSON Schema stays the enum.
Outcome = Annotated[int, Field(ge=0, le=3), WithJsonSchema({"enum": [0, 1, 2, 3],
                                                             "type": "integer"})]
Smets = Annotated[int, Field(ge=1, le=2), WithJsonSchema({"enum": [1, 2], "type": "integer"})]

_EUI64_RE = re.compile(EUI64_PATTERN)


def is_eui64(text: str) -> bool:
    """Whether ``text`` is a device or User ID, in either case."""
    return _EUI64_RE.fullmatch(text) is not None

DeviceType = Literal["ESME", "GSME", "GPF", "CHF", "PPMID", "HCALCS", "IHD", "CAD"]
Status = Literal[
    "Pending",
    "Whitelisted",
    "InstalledNotCommissioned",
    "Commissioned",
    "Decommissioned",
    "Withdrawn",
    "Suspended",
    "Recovery",
    "Recovered",
    "NotApplicable",
]
Reason = Literal[
    "device-suspended", "not-authorised", "out-of-scope", "unknown-device", "invalid-request",
    "device-terminal",
]
Cause = Literal["sr11.2-response", "sr11.3-response", "sr11.3-retry-response", "cpl-removed"]


class Event(BaseModel):
    """Base of the input payloads: frozen, strict, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class Output(BaseModel):
    """Base of the output payloads: every field the contract names is written, null or not."""

    # every field is written, defaults included: the JSON Schema says each is required
    model_config = ConfigDict(frozen=True, extra="forbid",
                              json_schema_serialization_defaults_required=True)
    omit_none: ClassVar[bool] = False


def _names(value: str, first: str, second: str) -> bool:
    """Whether ID ``value`` is ``first:second:counter`` in either case, ``first`` and ``second``
    being EUI-64s already checked: the test a valid ID passes without a pattern match."""
    head, colon, counter = value.rpartition(":")
    return (colon == ":" and _counter(counter) and head.isascii()
            and head.upper() == f"{first}:{second}")


def _counter(text: str) -> bool:
    # ASCII only: str.isdigit() also takes digits such as '²', which int() refuses
    return text.isascii() and text.isdigit()


def _split_id(value: str, what: str) -> tuple[str, str]:
    """The two EUI-64s of an ID ``EUI-64:EUI-64:counter``, upper case."""
    parts = value.split(":")
    if len(parts) != 3 or not _counter(parts[2]) or not (
            _EUI64_RE.fullmatch(parts[0]) and _EUI64_RE.fullmatch(parts[1])):
        raise ValueError(f"{what} {value!r} is not 'EUI-64:EUI-64:counter'")
    return parts[0].upper(), parts[1].upper()


class CplEntry(Event):
    manufacturer: HexId
    model: HexId
    hardware_version: HexId
    firmware_version: FirmwareVersion
    firmware_hash: ImageHash
    status: Literal["Active", "Removed"]
    at: datetime

    @property
    def key(self) -> str:
        return cpl_key(self.manufacturer, self.model, self.hardware_version, self.firmware_version)


def cpl_key(manufacturer: str, model: str, hardware: str, firmware: str) -> str:
    return f"{manufacturer}:{model}:{hardware}:{firmware}"


class Inventory(Event):
    device_id: EUI64
    device_type: DeviceType
    smets: Smets
    manufacturer: HexId
    model: HexId
    hardware_version: HexId
    firmware_version: FirmwareVersion
    status: Status
    supplier: EUI64
    gpf_id: EUI64 | None = None
    status_before_suspension: Status | None = None
    at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        if self.status_before_suspension == "Suspended":
            raise ValueError(
                "status_before_suspension cannot be Suspended: it is the status that leaving "
                "Suspended restores"
            )
        return self


class ServiceRequest(Event):
    # Unknown fields are kept: an accepted SR goes on to the device "as received".
    model_config = ConfigDict(frozen=True, strict=True, extra="allow")

    request_id: Annotated[str, StringConstraints(max_length=120)]
    sr: ServiceReference
    originator: EUI64
    device_id: EUI64
    firmware_hash: ImageHash | None = None
    firmware_version: FirmwareVersion | None = None
    at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> ServiceRequest:
        if not _names(self.request_id, self.originator, self.device_id):
            _split_id(self.request_id, "request_id")  # the error for an ID not of that form
            raise ValueError(
                f"request_id {self.request_id!r} must be originator:device_id:counter "
                f"({self.originator}:{self.device_id}:...)"
            )
        if self.sr == "11.3" and self.firmware_hash is None:
            raise ValueError("an SR11.3 needs firmware_hash, the image to activate")
        if self.sr == "11.1" and self.firmware_version is None:
            raise ValueError("an SR11.1 needs firmware_version, the image it distributes")
        return self

    @property
    def counter(self) -> int:
        return int(self.request_id.rsplit(":", 1)[1])

    @property
    def canonical_id(self) -> str:
        """The request ID with its EUI-64s upper case, as a response's ``request_id`` gives it:
        IDs are accepted in either case, so they are matched in one."""
        return f"{self.originator}:{self.device_id}:{self.request_id.rsplit(':', 1)[1]}"


class DeviceResponse(Event):
    response_id: Annotated[str, StringConstraints(max_length=120)]
    sr: ServiceReference
    device_id: EUI64
    outcome: Outcome | None = None
    firmware_version: FirmwareVersion | None = None
    gsme_id: EUI64 | None = None
    at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> DeviceResponse:
        target, _ = _split_id(self.response_id, "response_id")
        if target != self.device_id:
            raise ValueError(
                f"response_id {self.response_id!r} must start with device_id {self.device_id}"
            )
        if self.sr in ("11.2", "11.3") and self.firmware_version is None:
            raise ValueError(f"an SR{self.sr} response needs firmware_version")
        if self.sr == "11.3" and self.outcome is None:
            raise ValueError("an SR11.3 response needs outcome (0, 1, 2 or 3)")
        return self

    @property
    def request_id(self) -> str:
        """The ID of the request this answers: target:originator:n becomes originator:target:n."""
        target, originator, counter = self.response_id.split(":")
        return f"{originator.upper()}:{target.upper()}:{counter}"

    @property
    def canonical_id(self) -> str:
        """The response ID with its EUI-64s upper case: a copy sent in another case is the
        same response."""
        return self.response_id.upper()

    @property
    def subject(self) -> str:
        """The device whose record this response concerns (the GSME for a GPF's copy)."""
        return self.gsme_id or self.device_id


class Source(Output):
    topic: str
    partition: int
    offset: int
    id: str | None = None


class CplRemoval(Event):
    """Internal control message: one per partition of the device stream for each removal."""

    entry: CplEntry
    source: Source


class DeviceCommand(Output):
    """The SR as received: its optional fields only when they were given, a sender's unknown
    fields as they were (null included), and retry on an SR11.3 only."""

    model_config = ConfigDict(frozen=True, extra="allow",
                              json_schema_serialization_defaults_required=False)

    request_id: str
    sr: str
    originator: str
    device_id: str
    at: datetime
    accepted_at: datetime
    retry: bool | None = Field(None, exclude_if=lambda retry: retry is None)


class Rejection(Output):
    request_id: str
    device_id: str | None
    sr: str | None
    reason: Reason
    response_code: str
    at: datetime


class StatusCorrection(Output):
    correction_id: str
    device_id: str
    from_status: Status
    to_status: Status
    from_firmware: str
    to_firmware: str
    cause: Cause
    source: Source
    at: datetime


class N52Alert(Output):
    alert_code: Literal["N52"] = "N52"
    device_id: str
    gpf_id: str
    smi_firmware_version: str
    gpf_firmware_version: str
    recipient: str
    source: Source
    at: datetime


class DeadLetter(Output):
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    error: str
    at: datetime


def device_key(event: Event) -> str:
    """The key a message about this event must carry: the device it concerns (the GSME for a
    GPF's copy), or the CPL key for a CPL entry."""
    key = _by_type(_DEVICE_KEYS, event)
    if key is None:
        raise TypeError(f"{type(event).__name__} has no device key")
    return cast(str, key(event))


def source_id(event: Event) -> str | None:
    """The ID a correction's ``source.id`` names: the request's or the response's own, or the
    CPL entry's key."""
    source = _by_type(_SOURCE_IDS, event)
    return None if source is None else cast("str | None", source(event))


# Looked up by the event's own class: ``isinstance`` with a pydantic model goes through
# ABCMeta's check, three times the cost of a plain class's, and these run for every event.
_DEVICE_KEYS: dict[type, Callable[[Any], Any]] = {
    ServiceRequest: attrgetter("device_id"), DeviceResponse: attrgetter("subject"),
    Inventory: attrgetter("device_id"), CplEntry: attrgetter("key")}
_SOURCE_IDS: dict[type, Callable[[Any], Any]] = {
    ServiceRequest: attrgetter("request_id"), DeviceResponse: attrgetter("response_id"),
    CplEntry: attrgetter("key"), Inventory: lambda event: None}


def _by_type(table: dict[type, Callable[[Any], Any]], event: Event) -> Callable[[Any], Any] | None:
    found = table.get(type(event))
    if found is None:  # a subclass
        found = next((f for kind, f in table.items() if isinstance(event, kind)), None)
    return found


INPUT_MODELS: dict[str, type[Event]] = {
    topics.CPL: CplEntry,
    topics.INVENTORY: Inventory,
    topics.REQUESTS: ServiceRequest,
    topics.RESPONSES: DeviceResponse,
}

OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    topics.COMMANDS: DeviceCommand,
    topics.REJECTIONS: Rejection,
    topics.CORRECTIONS: StatusCorrection,
    topics.ALERTS: N52Alert,
    topics.DEADLETTER: DeadLetter,
}


"""``decide``: one device's record, one input event, the CPL and the policy in; the new record
and the outputs out. Pure: the caller passes the clock reading and where the event was read."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel

from schemas import topics
from schemas.models import (
    CplRemoval,
    DeviceCommand,
    DeviceResponse,
    Event,
    Inventory,
    N52Alert,
    Rejection,
    ServiceRequest,
    StatusCorrection,
)
from streams.core import rules
from streams.core.policy import Policy
from streams.core.records import Change, Device, Early, Position

CORRECTION_NAMESPACE = uuid.UUID("5b0c7c1e-3c41-4d8e-9a57-1f0d5e0a1052")
_NAMESPACE_BYTES = CORRECTION_NAMESPACE.bytes

Output = tuple[str, str, BaseModel]  # (contract topic, key, payload)


class Decision(NamedTuple):
    record: Device | None  # the new record, None when it is unchanged
    outputs: tuple[Output, ...] = ()
    outcome: str = "unchanged"  # what happened, for metrics: accepted, rejected:<reason>, ...


def decide(
    record: Device | None,
    event: Event,
    cpl: Mapping[str, Any],
    policy: Policy,
    at: Position,
    now: datetime,
) -> Decision:
    if isinstance(event, ServiceRequest):
        return on_request(record, event, cpl, policy, now)
    if isinstance(event, DeviceResponse):
        return on_response(record, event, cpl, policy, at, now)
    if isinstance(event, Inventory):
        return on_inventory(record, event, cpl, at, now)
    if isinstance(event, CplRemoval):
        return on_cpl_removal(record, event, at, now)
    raise TypeError(f"decide() has no rule for {type(event).__name__}")


def on_request(
    record: Device | None, request: ServiceRequest, cpl: Mapping[str, Any], policy: Policy,
    now: datetime,
) -> Decision:
    if record is not None and rules.known_request(record, request.canonical_id,
                                                    request.sr):
        return Decision(None, outcome="ignored:duplicate-request")  # its command has gone
    reason = rules.rejection_reason(record, request, policy)
    if reason is not None:
        rejection = reject(request.request_id, request.device_id, request.sr, reason, policy, now)
        return Decision(None, (rejection,), f"rejected:{reason}")
    assert record is not None
    output: Output = (topics.COMMANDS, request.device_id,
                      command(request, record, policy, now))
    if not rules.worth_remembering(request.sr, record.device_type, policy):
        return Decision(None, (output,), "accepted")
    updated, pushed_out = rules.awaiting(record, request, policy)
    accepted = "accepted:pushed-out-oldest" if pushed_out else "accepted"
    early = next((e for e in updated.early if e.answers(request.canonical_id, request.sr)), None)
    if early is None:
        return Decision(updated, (output,), accepted)
    # its response came first: decide it now, as if it had waited for the request
    updated = updated._replace(early=tuple(e for e in updated.early if e is not early))
    response = DeviceResponse.model_validate(early.response, strict=False)
    answered = on_response(updated, response, cpl, policy, Position(**early.source), now)
    return Decision(answered.record or updated, (output, *answered.outputs), accepted)


def command(request: ServiceRequest, record: Device, policy: Policy,
            now: datetime) -> DeviceCommand:
    """The SR as received, plus when it was accepted and, for SR11.3, whether it is a retry.
    A sender's own ``accepted_at`` or ``retry`` field is overwritten, not an error."""
    fields = _as_given(request)  # a new dict: filled in here
    fields["accepted_at"] = now
    fields.pop("retry", None)  # only an SR11.3's, and only ours
    if request.sr == "11.3":
        awaited = rules.awaited(record.pending, rules.epoch(request.at), policy)
        fields["retry"] = rules.is_retry(awaited, request.firmware_hash)
    return DeviceCommand(**fields)


def _as_given(request: ServiceRequest) -> dict[str, Any]:
    """The request's fields as its sender gave them, extras last; an optional field of the
    contract's given as null is left out, as if not given. ``model_dump(exclude_unset=True)``
    without its copying (a third of what accepting an SR cost). Pydantic v2 keeps a model's
    field values in its ``__dict__``; if a release did not, test_domain's command-as-written
    test would fail."""
    given = request.model_fields_set
    fields = {name: value for name, value in request.__dict__.items()
              if value is not None and name in given}
    if extra := request.model_extra:
        fields.update(extra)
    return fields


def reject(
    request_id: str, device_id: str | None, sr: str | None, reason: str, policy: Policy,
    now: datetime,
) -> Output:
    """A rejection, keyed by the device when known so that it follows the device's order."""
    rejection = Rejection(
        request_id=request_id,
        device_id=device_id,
        sr=sr,
        reason=reason,
        response_code=policy.response_code(reason),
        at=now,
    )
    return (topics.REJECTIONS, device_id or request_id, rejection)


def on_response(
    record: Device | None,
    response: DeviceResponse,
    cpl: Mapping[str, Any],
    policy: Policy,
    at: Position,
    now: datetime,
) -> Decision:
    if record is None:
        return Decision(None, outcome="ignored:unknown-device")
    if response.gsme_id is not None:
        return on_gpf_copy(record, response, policy, at, now)
    if record.terminal:  # no SR reaches it, so no response has a request to settle
        return Decision(None, outcome="ignored:terminal")
    answered = rules.pending_request(record, response.request_id, response.sr)
    if answered is None and rules.was_closed(record, response.request_id, response.sr):
        return Decision(None, outcome="ignored:request-closed")  # answered already, or lost
    if answered is None:
        return hold(record, response, at, policy)
    new = rules.settled(record, answered, policy)
    if rules.expired(answered, rules.epoch(response.at), policy):
        return Decision(new, outcome="ignored:request-expired")
    cause = rules.reconciling_cause(answered, response, record.device_type, policy)
    if cause is None:
        return Decision(new, outcome="settled")
    assert response.firmware_version is not None
    new = rules.reconcile(new, response.firmware_version, cpl)
    return corrected(record, new, cause, at, now)


def hold(record: Device, response: DeviceResponse, at: Position, policy: Policy) -> Decision:
    """Keep a response no request awaits: its request may still be on its way. Only responses
    that could correct the SMI are worth a place; a copy of one already held changes nothing."""
    if not rules.worth_remembering(response.sr, record.device_type, policy):
        return Decision(None, outcome="ignored:no-request-awaiting")
    if any(e.answers(response.request_id, response.sr) for e in record.early):
        return Decision(None, outcome="ignored:duplicate")
    early = Early(response.request_id, response.model_dump(mode="json"), at._asdict())
    held = (*record.early, early)[-policy.pending_limit :]
    return Decision(record._replace(early=held), outcome="held:no-request-yet")


def on_gpf_copy(
    gsme: Device, response: DeviceResponse, policy: Policy, at: Position, now: datetime
) -> Decision:
    if gsme.device_type != "GSME" or gsme.gpf_id != response.device_id:
        return Decision(None, outcome="ignored:not-the-gsme-gpf")
    if response.sr != "11.2":  # only a read of the firmware version reports the GSME's
        return Decision(None, outcome="ignored:not-an-sr11.2-copy")
    if gsme.terminal:  # nothing in this system changes or reports on it any more
        return Decision(None, outcome="ignored:terminal")
    if response.canonical_id in gsme.gpf_responses_seen:
        return Decision(None, outcome="ignored:duplicate")
    seen = (*gsme.gpf_responses_seen, response.canonical_id)[-policy.pending_limit :]
    new = gsme._replace(gpf_responses_seen=seen)
    reported = response.firmware_version
    if reported is None or not rules.gpf_copy_mismatch(gsme, reported):
        return Decision(new, outcome="gpf-copy-matches")
    alert = N52Alert(
        device_id=gsme.device_id,
        gpf_id=response.device_id,
        smi_firmware_version=gsme.firmware_version,
        gpf_firmware_version=reported,
        recipient=gsme.supplier,
        source=at.source(),
        at=now,
    )
    return Decision(new, ((topics.ALERTS, gsme.device_id, alert),), "alert:N52")


def on_inventory(record: Device | None, inventory: Inventory, cpl: Mapping[str, Any],
                 at: Position, now: datetime) -> Decision:
    """Stored as the SMI's registry says, even over a terminal device; a device registered on
    firmware whose CPL entry is removed is suspended at once, as the removal would have."""
    stored = Device.from_inventory(inventory, record)
    if not rules.registered_on_removed_firmware(stored, cpl):
        return Decision(stored, outcome="stored")
    return corrected(stored, stored.suspended(), "cpl-removed", at, now)


def on_cpl_removal(
    record: Device | None, removal: CplRemoval, at: Position, now: datetime,
) -> Decision:
    if record is None:
        return Decision(None, outcome="ignored:unknown-device")
    new = rules.suspend_for_removal(record, removal.entry)
    return corrected(record, new, "cpl-removed", at, now)


def corrected(old: Device, new: Device, cause: str, at: Position, now: datetime) -> Decision:
    """Reconciliation: every change of status or firmware emits one correction, none otherwise."""
    if (old.status, old.firmware_version) == (new.status, new.firmware_version):
        return Decision(new if new != old else None, outcome="unchanged")
    correction = StatusCorrection(
        correction_id=correction_id(at, new.device_id),
        device_id=new.device_id,
        from_status=old.status,
        to_status=new.status,
        from_firmware=old.firmware_version,
        to_firmware=new.firmware_version,
        cause=cause,
        source=at.source(),
        at=now,
    )
    change = Change(
        at=now.isoformat(),
        from_status=old.status,
        to_status=new.status,
        from_firmware=old.firmware_version,
        to_firmware=new.firmware_version,
        cause=cause,
        source=at.label(),
    )
    return Decision(
        new.with_change(change),
        ((topics.CORRECTIONS, new.device_id, correction),),
        "corrected",
    )


def correction_id(at: Position, device_id: str) -> str:
    """Derived from the input that caused it, so a replay gives the same ID: the UUIDv5 of
    ``topic/partition/offset/device`` in :data:`CORRECTION_NAMESPACE`."""
    name = f"{at.topic}/{at.partition}/{at.offset}/{device_id}"
    return _uuid5(name)


def _uuid5(name: str) -> str:
    # uuid.uuid5 by hand: the same text for less work (UUID's constructor checks
    # and converts more than a known-good digest needs); a unit test holds them equal
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

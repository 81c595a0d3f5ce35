"""One function per rule of docs/domain.md; each reads like the section it cites."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.models import CplEntry, DeviceResponse, ServiceRequest, cpl_key
from streams.core.policy import Policy
from streams.core.records import SUSPENDED, TERMINAL, Device, Pending

MP105_TYPES = frozenset({"ESME", "GSME"})
SECMP0007_TYPES = frozenset({"PPMID", "HCALCS"})
TYPE_2 = frozenset({"IHD", "CAD"})  # not on the CPL, no firmware status on the SMI
SUPPLIER_ONLY_SRS = frozenset({"11.1", "11.3", "8.3", "8.4"})  # the SR table, "who may send"


def is_firmware_sr(sr: str) -> bool:
    return sr.startswith("11.")


def mp105_applies(device_type: str, policy: Policy) -> bool:
    """Scope: ESME and GSME always, PPMID and HCALCS only with SECMP0007."""
    return device_type in MP105_TYPES or (device_type in SECMP0007_TYPES and policy.secmp0007)


def in_scope(sr: str, device_type: str, policy: Policy) -> bool:
    """Scope: Type 2 devices never take firmware SRs; PPMID, HCALCS only with SECMP0007."""
    if not is_firmware_sr(sr):
        return True
    if device_type in TYPE_2:
        return False
    return device_type not in SECMP0007_TYPES or policy.secmp0007


def authorised(request: ServiceRequest, record: Device) -> bool:
    """Service requests: some SRs only the device's responsible supplier may send."""
    return request.sr not in SUPPLIER_ONLY_SRS or request.originator == record.supplier


def allowed_while_suspended(sr: str, device_type: str, policy: Policy) -> bool:
    """Requests: the exception list, plus SR11.2 when MP105 is on and applies to the device."""
    if sr in policy.suspended_exceptions:
        return True
    return sr == "11.2" and policy.sr11_2_when_suspended and mp105_applies(device_type, policy)


def rejection_reason(record: Device | None, request: ServiceRequest, policy: Policy) -> str | None:
    """Why an SR is refused, checked in the order a sender can fix them; None to accept."""
    if record is None:
        return "unknown-device"
    if record.terminal:  # Decommissioned or Withdrawn: no SR reaches it any more
        return "device-terminal"
    if not in_scope(request.sr, record.device_type, policy):
        return "out-of-scope"
    if not authorised(request, record):
        return "not-authorised"
    if record.status == SUSPENDED and not allowed_while_suspended(
        request.sr, record.device_type, policy
    ):
        return "device-suspended"
    return None


def is_retry(pending: tuple[Pending, ...], firmware_hash: str | None) -> bool:
    """Requests: a further SR11.3 for the same image while an earlier one awaits its response."""
    return any(p.sr == "11.3" and p.firmware_hash == firmware_hash for p in pending)


def epoch(at: datetime) -> float:
    """Seconds since 1970 of a payload's ``at``; one without a zone is UTC, as the contract
    writes them, whatever the local zone of the process that reads it."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def awaited(pending: tuple[Pending, ...], now: float, policy: Policy) -> tuple[Pending, ...]:
    """Requests: those still awaited at ``now`` (the time of the event being decided); one
    older than the age limit is taken as lost."""
    return tuple(p for p in pending if not expired(p, now, policy))


def expired(pending: Pending, now: float, policy: Policy) -> bool:
    return pending.at is not None and now - pending.at > policy.pending_max_age


def awaiting(record: Device, request: ServiceRequest, policy: Policy) -> tuple[Device, int]:
    """Remember an accepted SR11.2/11.3 until its response; with how many reads it pushed out.
    Expired requests go, and each SR keeps its own limit, so no read pushes out an SR11.3."""
    now = epoch(request.at)
    live = awaited(record.pending, now, policy)
    retry = request.sr == "11.3" and is_retry(live, request.firmware_hash)
    entry = Pending(request.canonical_id, request.sr, request.firmware_hash, retry, now)
    kept = _within_limit((*live, entry), request.sr, policy.pending_limit)
    gone = [p for p in (*record.pending, entry) if p not in kept]
    dropped = len(live) + 1 - len(kept)
    return closing(record._replace(pending=kept), gone, policy), dropped


def _within_limit(pending: tuple[Pending, ...], sr: str, limit: int) -> tuple[Pending, ...]:
    """At most ``limit`` of one SR, the oldest going first; of SR11.3s the retries go before
    a first one, whose response reconciles while it is awaited."""
    same = [p for p in pending if p.sr == sr]
    if len(same) <= limit:
        return pending
    victims = ([p for p in same if p.retry] + [p for p in same if not p.retry])
    # by identity: another SR a sender sent under the same ID is not pushed out with it
    gone = {id(p) for p in victims[: len(same) - limit]}
    return tuple(p for p in pending if id(p) not in gone)


def settled(record: Device, answered: Pending, policy: Policy) -> Device:
    """A response settles its own request only: a late answer to a first SR11.3 must still
    find it (the first SR11.3's response reconciles while it is awaited), and a retry sent
    before that late answer still awaits its own."""
    pending = tuple(p for p in record.pending if p is not answered)
    return closing(record._replace(pending=pending), [answered], policy)


def closing(record: Device, gone: list[Pending], policy: Policy) -> Device:
    """Remember requests no longer awaited, so a copy of one, or of its response, is known:
    twice the requests awaited, per SR, so that reads never push out an SR11.3 here either."""
    if not gone:
        return record
    closed = (*record.closed, *((p.request_id, p.sr) for p in gone))
    return record._replace(closed=_last_per_sr(closed, 2 * policy.pending_limit))


def _last_per_sr(closed: tuple[tuple[str, str], ...], limit: int
                 ) -> tuple[tuple[str, str], ...]:
    kept: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for entry in reversed(closed):
        seen[entry[1]] = seen.get(entry[1], 0) + 1
        if seen[entry[1]] <= limit:
            kept.append(entry)
    return tuple(reversed(kept))


def was_closed(record: Device, request_id: str, sr: str) -> bool:
    """Whether this request (its ID and SR) was answered, expired or pushed out lately."""
    return (request_id, sr) in record.closed


def pending_request(record: Device, request_id: str, sr: str) -> Pending | None:
    """The awaited request with this ID and SR: two SRs under one ID (a sender's slip) are
    two requests."""
    return next((p for p in record.pending if p.request_id == request_id and p.sr == sr), None)


def known_request(record: Device, request_id: str, sr: str) -> bool:
    """Whether this request (its ID and SR) was already taken: awaited, or answered lately.
    Another SR under the same ID is not a copy of it, and gets its own answer."""
    return was_closed(record, request_id, sr) or pending_request(record, request_id, sr) is not None


def worth_remembering(sr: str, device_type: str, policy: Policy) -> bool:
    """Only requests whose response can correct the SMI are kept awaiting it: every SR11.3,
    and SR11.2 where the policy lets its response reconcile (the policies)."""
    if sr == "11.3":
        return True
    return sr == "11.2" and policy.sr11_2_when_suspended and mp105_applies(device_type, policy)


def reconciling_cause(
    answered: Pending, response: DeviceResponse, device_type: str, policy: Policy
) -> str | None:
    """Sections 4 and 6: which responses the active policy lets correct the SMI, and as what."""
    if answered.sr == "11.2":
        if policy.sr11_2_when_suspended and mp105_applies(device_type, policy):
            return "sr11.2-response"
        return None
    if answered.sr != "11.3" or response.outcome != 0:
        return None
    if not answered.retry:
        return "sr11.3-response"  # the first SR11.3's response reconciles while it is awaited
    if policy.sr11_3_retry_updates_smi and mp105_applies(device_type, policy):
        return "sr11.3-retry-response"
    return None


def cpl_active(cpl: Mapping[str, Any], record: Device, firmware: str) -> bool:
    entry = cpl.get(cpl_key(record.manufacturer, record.model, record.hardware_version, firmware))
    return entry is not None and entry.get("status") == "Active"


def reconcile(record: Device, version: str, cpl: Mapping[str, Any]) -> Device:
    """Reconciliation: set the reported firmware; restore or suspend by its CPL entry."""
    if record.terminal:
        return record
    updated = record.with_firmware(version)
    if cpl_active(cpl, record, version):
        return updated.restored()
    return updated.suspended()


def covered_by(entry: CplEntry, record: Device) -> bool:
    return (
        record.manufacturer == entry.manufacturer
        and record.model == entry.model
        and record.hardware_version == entry.hardware_version
        and record.firmware_version == entry.firmware_version
    )


def suspend_for_removal(record: Device, entry: CplEntry) -> Device:
    """Reconciliation: a removed CPL entry suspends every non-terminal device it covered."""
    if not covered_by(entry, record) or not removal_can_suspend(record.status,
                                                                record.device_type):
        return record
    return record.suspended()


def removal_can_suspend(status: str, device_type: str) -> bool:
    """Whether a removal changes a record it covers: not terminal, not Type 2 (no firmware
    status on the SMI), not Suspended already. Read off the stored record, it spares the
    decoding of every record a removal would leave as it is."""
    return status not in TERMINAL and status != SUSPENDED and device_type not in TYPE_2


def gpf_copy_mismatch(gsme: Device, reported: str) -> bool:
    """GPF and N52: a GPF's copy differing from the GSME's SMI firmware raises N52."""
    return reported != gsme.firmware_version


def registered_on_removed_firmware(record: Device, cpl: Mapping[str, Any]) -> bool:
    """Reconciliation: a device the inventory registers on firmware whose CPL entry is
    removed is suspended, as if the removal had come after it (an unlisted version, which
    the CPL may not have caught up with, is left as registered)."""
    entry = cpl.get(record.firmware_key)
    return (entry is not None and entry.get("status") == "Removed"
            and removal_can_suspend(record.status, record.device_type))

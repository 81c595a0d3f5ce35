"""The rules (docs/domain.md), rule by rule, at the level of ``decide``: tables of cases,
microseconds each."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.codec import dumps
from schemas.models import (
    CplEntry,
    CplRemoval,
    DeviceResponse,
    Inventory,
    ServiceRequest,
    Source,
)
from streams.core import Decision, Device, Policy, Position, decide
from streams.core.decide import CORRECTION_NAMESPACE, correction_id

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)
DEVICE, GPF = "00-DB-12-34-56-78-00-01", "00-DB-12-34-56-78-00-02"
SUPPLIER, OTHER = "90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-01-00-07"
OLD, NEW, UNLISTED = "0002012F", "00020130", "0002FFFF"
CPL = {f"AB01:010A030B:0001:{v}": {"status": "Active"} for v in (OLD, NEW)}
SOURCE = Source(topic="duis.device-responses", partition=3, offset=1812)
AT = Position.of(SOURCE)
POLICIES = {
    "baseline": Policy(sr11_2_when_suspended=False, sr11_3_retry_updates_smi=False),
    "sr11.2": Policy(sr11_2_when_suspended=True, sr11_3_retry_updates_smi=False),
    "retry": Policy(sr11_2_when_suspended=False, sr11_3_retry_updates_smi=True),
    "mp105": Policy(),
}


def at(offset: int) -> Position:
    return AT._replace(offset=offset)


def device(status: str = "Commissioned", device_type: str = "ESME", **fields: Any) -> Device:
    before = "Commissioned" if status == "Suspended" else None
    return Device(DEVICE, device_type, 2, "AB01", "010A030B", "0001", OLD, status, SUPPLIER,
                  status_before_suspension=before, **fields)


def request(sr: str, counter: int = 1, originator: str = SUPPLIER, **extra: Any) -> ServiceRequest:
    if sr == "11.3":
        extra.setdefault("firmware_hash", NEW * 8)
    if sr == "11.1":
        extra.setdefault("firmware_version", NEW)
    return ServiceRequest.model_validate_json(json.dumps({
        "request_id": f"{originator}:{DEVICE}:{counter}", "sr": sr, "originator": originator,
        "device_id": DEVICE, "at": "2026-11-24T08:00:00Z", **extra}))


def response(sr: str, counter: int = 1, firmware: str = NEW, **extra: Any) -> DeviceResponse:
    if sr == "11.3":
        extra.setdefault("outcome", 0)
    return DeviceResponse.model_validate_json(json.dumps({
        "response_id": f"{DEVICE}:{SUPPLIER}:{counter}", "sr": sr, "device_id": DEVICE,
        "firmware_version": firmware, "at": "2026-11-24T08:00:00Z", **extra}))


def run(record: Device | None, *events: Any, policy: Policy | None = None) -> tuple[
        Device | None, list[Decision]]:
    decisions = []
    for offset, event in enumerate(events):
        source = at(offset)
        decision = decide(record, event, CPL, policy or Policy(), source, NOW)
        record = decision.record or record
        decisions.append(decision)
    return record, decisions


def outputs(decisions: list[Decision], topic: str) -> list[Any]:
    return [payload for d in decisions for name, _, payload in d.outputs if name == topic]


# -- Section 4: which SRs reach a device -------------------------------------------------

@pytest.mark.parametrize(("record", "sr", "originator", "policy", "reason"), [
    (None, "11.2", SUPPLIER, "mp105", "unknown-device"),
    (device(device_type="IHD"), "11.2", SUPPLIER, "mp105", "out-of-scope"),
    (device(device_type="CAD"), "11.1", SUPPLIER, "mp105", "out-of-scope"),
    (device(device_type="PPMID"), "11.2", SUPPLIER, "mp105", "out-of-scope"),
    (device(device_type="HCALCS"), "11.3", SUPPLIER, "mp105", "out-of-scope"),
    (device(), "11.3", OTHER, "mp105", "not-authorised"),
    (device(), "11.1", OTHER, "mp105", "not-authorised"),
    (device(), "8.3", OTHER, "mp105", "not-authorised"),
    (device(), "8.4", OTHER, "mp105", "not-authorised"),
    (device("Suspended"), "4.1.1", SUPPLIER, "mp105", "device-suspended"),
    (device("Suspended"), "2.1", SUPPLIER, "mp105", "device-suspended"),
    (device("Suspended"), "11.2", SUPPLIER, "baseline", "device-suspended"),
    (device("Suspended"), "11.2", SUPPLIER, "retry", "device-suspended"),
    (device("Suspended", device_type="GPF"), "11.2", SUPPLIER, "mp105", "device-suspended"),
    (device("Suspended", device_type="CHF"), "11.2", SUPPLIER, "mp105", "device-suspended"),
    (device("Decommissioned"), "11.2", SUPPLIER, "mp105", "device-terminal"),
    (device("Withdrawn"), "8.2", OTHER, "baseline", "device-terminal"),
    (device("Withdrawn", device_type="IHD"), "11.1", OTHER, "mp105", "device-terminal"),
])
def test_rejections(record: Device | None, sr: str, originator: str, policy: str,
                    reason: str) -> None:
    _, [decision] = run(record, request(sr, originator=originator), policy=POLICIES[policy])
    [rejection] = outputs([decision], "duis.rejections")
    assert (rejection.reason, rejection.request_id, decision.record) == (
        reason, f"{originator}:{DEVICE}:1", None)
    assert rejection.response_code == POLICIES[policy].response_code(reason)
    assert not outputs([decision], "duis.device-commands")


@pytest.mark.parametrize(("record", "sr", "originator", "policy"), [
    (device("Suspended"), "11.2", SUPPLIER, "mp105"),
    (device("Suspended"), "11.2", OTHER, "sr11.2"),  # any registered User may read
    (device("Suspended", device_type="GSME"), "11.2", SUPPLIER, "mp105"),
    (device("Suspended"), "11.1", SUPPLIER, "baseline"),
    (device("Suspended"), "11.3", SUPPLIER, "baseline"),
    (device("Suspended"), "8.2", OTHER, "baseline"),
    (device("Suspended"), "8.3", SUPPLIER, "baseline"),
    (device("Suspended"), "8.4", SUPPLIER, "baseline"),
    (device(), "4.1.1", OTHER, "baseline"),  # non-firmware SRs: any User, any type
    (device(device_type="IHD"), "4.1.1", SUPPLIER, "baseline"),
    (device(device_type="GPF"), "11.2", OTHER, "baseline"),
    (device(device_type="PPMID"), "11.2", SUPPLIER, "mp105+secmp0007"),
    (device("Suspended", device_type="HCALCS"), "11.2", SUPPLIER, "mp105+secmp0007"),
])
def test_accepted(record: Device, sr: str, originator: str, policy: str) -> None:
    chosen = replace(POLICIES["mp105"], secmp0007=True) if "+" in policy else POLICIES[policy]
    _, [decision] = run(record, request(sr, originator=originator), policy=chosen)
    [command] = outputs([decision], "duis.device-commands")
    assert decision.outcome == "accepted" and command.request_id == f"{originator}:{DEVICE}:1"
    assert command.accepted_at == NOW
    assert command.retry is (False if sr == "11.3" else None)


def test_the_exception_list_is_a_setting() -> None:
    strict = replace(POLICIES["mp105"], suspended_exceptions=frozenset({"11.3"}))
    _, [decision] = run(device("Suspended"), request("8.2"), policy=strict)
    assert decision.outcome == "rejected:device-suspended"


def test_sr11_3_retry_is_told_from_the_sr_stream() -> None:
    _, decisions = run(device(), request("11.3", 1), request("11.3", 2),
                       request("11.3", 3, firmware_hash="CD" * 32))
    assert [c.retry for c in outputs(decisions, "duis.device-commands")] == [False, True, False]


def test_a_response_settles_its_sr11_3_so_the_next_is_a_first_attempt() -> None:
    _, decisions = run(device(), request("11.3", 1), response("11.3", 1), request("11.3", 2))
    assert [c.retry for c in outputs(decisions, "duis.device-commands")] == [False, False]


@pytest.mark.parametrize("policy", ["mp105", "retry"])
def test_a_late_failed_first_answer_leaves_the_retry_awaiting_its_own(policy: str) -> None:
    record, decisions = run(device(), request("11.3", 1), request("11.3", 2),
                            response("11.3", 1, firmware=OLD, outcome=1), response("11.3", 2),
                            policy=POLICIES[policy])
    assert [c.cause for c in outputs(decisions, "smi.status-corrections")] == [
        "sr11.3-retry-response"]
    assert record is not None and record.firmware_version == NEW and record.pending == ()


@pytest.mark.parametrize("policy", ["baseline", "sr11.2", "retry", "mp105"])
def test_the_first_sr11_3_answer_reconciles_even_after_the_retry_answer(policy: str) -> None:
    record, decisions = run(device(), request("11.3", 1), request("11.3", 2),
                            response("11.3", 2), response("11.3", 1), policy=POLICIES[policy])
    causes = [c.cause for c in outputs(decisions, "smi.status-corrections")]
    retry_counts = POLICIES[policy].sr11_3_retry_updates_smi
    assert causes == (["sr11.3-retry-response"] if retry_counts else ["sr11.3-response"])
    assert record is not None and record.firmware_version == NEW


@pytest.mark.parametrize("sr", ["11.3", "4.1.1"])
@pytest.mark.parametrize(("field", "value"), [
    ("retry", "sender's own"), ("retry", True), ("accepted_at", "sender's own")])
def test_a_sender_field_named_like_an_added_one_is_no_error(sr: str, field: str,
                                                            value: object) -> None:
    """Overwritten, or for an SR other than 11.3 dropped: ``retry`` is an SR11.3's alone."""
    _, [decision] = run(device(), request(sr, **{field: value}))
    [command] = outputs([decision], "duis.device-commands")
    assert decision.outcome == "accepted" and command.retry is (False if sr == "11.3" else None)
    assert command.accepted_at == NOW


def test_a_command_is_the_request_as_its_sender_wrote_it() -> None:
    """Every field given, in the sender's order and unknown ones included as they were (null
    too, nested or not); an optional field of the contract's given as null is left out, as
    one not given; ours added."""
    given = request("11.3", firmware_version=None, zone={"site": [1, None]}, note=None)
    _, [decision] = run(device(), given)
    [command] = outputs([decision], "duis.device-commands")
    assert json.loads(dumps(command)) == {
        "request_id": f"{SUPPLIER}:{DEVICE}:1", "sr": "11.3", "originator": SUPPLIER,
        "device_id": DEVICE, "at": "2026-11-24T08:00:00Z", "accepted_at": "2026-11-24T09:00:00Z",
        "retry": False, "firmware_hash": NEW * 8, "zone": {"site": [1, None]}, "note": None}
    assert list(json.loads(dumps(command)))[-3:] == ["firmware_hash", "zone", "note"]
    _, [read] = run(device(), request("4.1.1", note=None))
    [command] = outputs([read], "duis.device-commands")
    assert "retry" not in json.loads(dumps(command)) and json.loads(dumps(command))["note"] is None


# -- Sections 5 and 6: which responses correct the SMI, and how ----------------------------

@pytest.mark.parametrize(("policy", "first", "retry", "sr11_2"), [
    ("baseline", True, False, False),
    ("sr11.2", True, False, True),
    ("retry", True, True, False),
    ("mp105", True, True, True),
])
def test_policy_switches(policy: str, first: bool, retry: bool, sr11_2: bool) -> None:
    chosen = POLICIES[policy]
    # the first SR11.3's response always reconciles
    _, d1 = run(device(), request("11.3", 1), response("11.3", 1), policy=chosen)
    # a retry's response (the first response was lost)
    _, d2 = run(device(), request("11.3", 1), request("11.3", 2), response("11.3", 2),
                policy=chosen)
    # an SR11.2 to a meter that is not Suspended (so accepted under every policy)
    _, d3 = run(device(), request("11.2", 1), response("11.2", 1), policy=chosen)
    causes = [[c.cause for c in outputs(d, "smi.status-corrections")] for d in (d1, d2, d3)]
    assert causes == [["sr11.3-response"] if first else [],
                      ["sr11.3-retry-response"] if retry else [],
                      ["sr11.2-response"] if sr11_2 else []]


@pytest.mark.parametrize("device_type", ["GPF", "CHF"])
def test_mp105_reconciliation_is_for_meters_only(device_type: str) -> None:
    _, d = run(device(device_type=device_type), request("11.3", 1), request("11.3", 2),
               response("11.3", 2), request("11.2", 3), response("11.2", 3))
    assert not outputs(d, "smi.status-corrections")
    _, first = run(device(device_type=device_type), request("11.3", 1), response("11.3", 1))
    assert [c.cause for c in outputs(first, "smi.status-corrections")] == ["sr11.3-response"]


@pytest.mark.parametrize("outcome", [1, 2, 3])
def test_only_a_successful_activation_changes_the_smi(outcome: int) -> None:
    record, d = run(device(), request("11.3"), response("11.3", outcome=outcome))
    assert record is not None and record.firmware_version == OLD
    assert not outputs(d, "smi.status-corrections")


@pytest.mark.parametrize(("status", "reported", "to_status", "to_firmware"), [
    ("Suspended", NEW, "Commissioned", NEW),  # active entry: restore the kept status
    ("Commissioned", NEW, "Commissioned", NEW),  # active entry: align the firmware
    ("Commissioned", UNLISTED, "Suspended", UNLISTED),  # no entry: suspend
    ("Suspended", UNLISTED, "Suspended", UNLISTED),  # stays suspended, firmware recorded
])
def test_reconcile(status: str, reported: str, to_status: str, to_firmware: str) -> None:
    record, d = run(device(status), request("11.2"), response("11.2", firmware=reported))
    assert record is not None and (record.status, record.firmware_version) == (
        to_status, to_firmware)
    [c] = outputs(d, "smi.status-corrections")
    assert (c.from_status, c.to_status, c.from_firmware, c.to_firmware) == (
        status, to_status, OLD, to_firmware)
    if to_status == "Suspended" and status != "Suspended":
        assert record.status_before_suspension == status


def test_leaving_suspended_restores_exactly_the_status_before() -> None:
    record = device("Suspended")._replace(status_before_suspension="InstalledNotCommissioned")
    restored, _ = run(record, request("11.2"), response("11.2"))
    assert restored is not None and restored.status == "InstalledNotCommissioned"
    assert restored.status_before_suspension is None


def test_nothing_changed_emits_nothing() -> None:
    _, d = run(device(), request("11.2"), response("11.2", firmware=OLD))
    assert not outputs(d, "smi.status-corrections")


@pytest.mark.parametrize("status", ["Decommissioned", "Withdrawn"])
def test_terminal_records_never_change(status: str) -> None:
    """No SR reaches one (rejected device-terminal), so no response settles anything."""
    record, d = run(device(status), request("11.3"), response("11.3", firmware=UNLISTED))
    assert record is not None and (record.status, record.firmware_version) == (status, OLD)
    assert [x.outcome for x in d] == ["rejected:device-terminal", "ignored:terminal"]
    assert not outputs(d, "smi.status-corrections")
    assert not outputs(d, "duis.device-commands")
    removal = CplRemoval(entry=entry(OLD, "Removed"), source=SOURCE)
    assert decide(device(status), removal, CPL, Policy(), AT, NOW).record is None


def entry(firmware: str, status: str, model: str = "010A030B") -> CplEntry:
    return CplEntry.model_validate_json(json.dumps({
        "manufacturer": "AB01", "model": model, "hardware_version": "0001",
        "firmware_version": firmware, "firmware_hash": firmware * 8, "status": status,
        "at": "2026-11-24T08:00:00Z"}))


@pytest.mark.parametrize(("record", "removed", "suspends"), [
    (device(), entry(OLD, "Removed"), True),
    (device("InstalledNotCommissioned"), entry(OLD, "Removed"), True),
    (device(device_type="PPMID"), entry(OLD, "Removed"), True),
    (device("Suspended"), entry(OLD, "Removed"), False),  # already suspended
    (device(device_type="IHD"), entry(OLD, "Removed"), False),  # not on the CPL
    (device(), entry(NEW, "Removed"), False),  # another version
    (device(), entry(OLD, "Removed", model="010A030C"), False),  # another model
])
def test_cpl_removal(record: Device, removed: CplEntry, suspends: bool) -> None:
    decision = decide(record, CplRemoval(entry=removed, source=SOURCE), CPL, Policy(), AT,
                      NOW)
    corrections = outputs([decision], "smi.status-corrections")
    assert bool(corrections) is suspends
    if suspends:
        assert corrections[0].cause == "cpl-removed" and corrections[0].to_status == "Suspended"
        assert corrections[0].source == SOURCE  # where the removal was read
        assert decision.record is not None
        assert decision.record.status_before_suspension == record.status


# -- Section 7: gas -------------------------------------------------------------------------

def gsme() -> Device:
    return device(device_type="GSME", gpf_id=GPF)


def gpf_copy(firmware: str, counter: int = 1) -> DeviceResponse:
    return DeviceResponse.model_validate_json(json.dumps({
        "response_id": f"{GPF}:{SUPPLIER}:{counter}", "sr": "11.2", "device_id": GPF,
        "gsme_id": DEVICE, "firmware_version": firmware, "at": "2026-11-24T08:00:00Z"}))


def test_a_gpf_copy_that_differs_raises_n52_and_never_changes_the_gsme() -> None:
    record, d = run(gsme(), gpf_copy(NEW), gpf_copy(NEW))  # the second is a duplicate
    [alert] = outputs(d, "dcc.alerts")
    assert (alert.alert_code, alert.device_id, alert.gpf_id, alert.recipient) == (
        "N52", DEVICE, GPF, SUPPLIER)
    assert (alert.smi_firmware_version, alert.gpf_firmware_version) == (OLD, NEW)
    assert record is not None and record.firmware_version == OLD
    assert not outputs(d, "smi.status-corrections")


def test_a_gpf_copy_sent_again_in_lower_case_raises_no_second_n52() -> None:
    copy = gpf_copy(NEW)
    again = copy.model_copy(update={"response_id": copy.response_id.lower()})
    _, d = run(gsme(), copy, again)
    assert len(outputs(d, "dcc.alerts")) == 1 and d[1].outcome == "ignored:duplicate"


def test_a_gpf_copy_that_matches_raises_nothing() -> None:
    _, d = run(gsme(), gpf_copy(OLD))
    assert not outputs(d, "dcc.alerts")


def test_only_a_gpfs_sr11_2_response_raises_n52() -> None:
    copy = gpf_copy(NEW)
    activation = copy.model_copy(update={"sr": "11.3", "outcome": 0})
    _, d = run(gsme(), activation)
    assert d[0].outcome == "ignored:not-an-sr11.2-copy" and not d[0].outputs


@pytest.mark.parametrize("status", ["Decommissioned", "Withdrawn"])
def test_a_gsme_in_a_terminal_status_raises_no_n52(status: str) -> None:
    _, d = run(gsme()._replace(status=status), gpf_copy(NEW))
    assert d[0].outcome == "ignored:terminal" and not d[0].outputs


def test_a_copy_from_a_gpf_the_gsme_does_not_name_is_ignored() -> None:
    _, d = run(gsme()._replace(gpf_id="00-DB-12-34-56-78-00-09"), gpf_copy(NEW))
    assert d[0].outcome == "ignored:not-the-gsme-gpf" and not d[0].outputs


# -- Corrections: once per change, IDs from the source ------------------------------------

def test_a_duplicate_response_corrects_once() -> None:
    record, d = run(device("Suspended"), request("11.2"), response("11.2"), response("11.2"))
    assert len(outputs(d, "smi.status-corrections")) == 1
    assert record is not None and record.status == "Commissioned"


def test_a_duplicate_never_changes_the_outcome() -> None:
    record, _ = run(device(), request("11.2", 1), response("11.2", 1, firmware=NEW),
                    request("11.2", 2), response("11.2", 2, firmware=UNLISTED),
                    response("11.2", 1, firmware=NEW))  # a late copy of the first
    assert record is not None and (record.status, record.firmware_version) == (
        "Suspended", UNLISTED)


def test_correction_ids_come_from_the_source() -> None:
    assert correction_id(AT, DEVICE) == correction_id(AT, DEVICE)  # no clock, no chance
    assert correction_id(AT, DEVICE) != correction_id(at(1813), DEVICE)
    assert correction_id(AT, DEVICE) != correction_id(AT, GPF)
    _, d = run(device("Suspended"), request("11.2"), response("11.2"))
    [c] = outputs(d, "smi.status-corrections")
    assert c.correction_id == correction_id(at(1), DEVICE)
    assert c.source.offset == 1 and c.source.partition == 3


def test_correction_ids_stay_the_uuid5_earlier_releases_gave() -> None:
    # a replay is compared with what a worker wrote before: the same input, the same IDs
    name = f"{SOURCE.topic}/{SOURCE.partition}/{SOURCE.offset}/{DEVICE}"
    assert correction_id(AT, DEVICE) == str(uuid.uuid5(CORRECTION_NAMESPACE, name))


def test_the_record_keeps_its_recent_corrections() -> None:
    record, _ = run(device("Suspended"), request("11.2"), response("11.2"))
    assert record is not None
    [change] = record.history
    assert (change["from_status"], change["to_status"], change["cause"]) == (
        "Suspended", "Commissioned", "sr11.2-response")
    assert change["source"].startswith("duis.device-responses[3]@1")
    assert Device.from_dict(record.to_dict(3)) == record


# -- Inventory restating Suspended ---------------------------------------------------------

@pytest.mark.parametrize(("saved", "status", "comes_back_to"), [
    ("InstalledNotCommissioned", "Suspended", "InstalledNotCommissioned"),
    ("Pending", "Suspended", "Pending"),
    (None, "Pending", "Pending"),  # suspended by the restatement: back to what it was
    (None, "Decommissioned", "Commissioned"),
])
def test_an_inventory_restating_suspended_keeps_the_status_saved(
        saved: str | None, status: str, comes_back_to: str) -> None:
    record = device(status=status)._replace(status_before_suspension=saved)
    restated = inventory(status="Suspended")  # without status_before_suspension
    new = Device.from_inventory(restated, record)
    assert new.status == "Suspended" and new.status_before_suspension == comes_back_to
    assert Device.from_inventory(restated, None).status_before_suspension == "Commissioned"


def inventory(status: str) -> Inventory:
    return Inventory(device_id=DEVICE, device_type="ESME", smets=2, manufacturer="AB01",
                     model="010A030B", hardware_version="0001", firmware_version=OLD,
                     status=status, supplier=SUPPLIER, at=NOW)


# -- Terminal devices and the inventory: the registry's word stands -------------------------

@pytest.mark.parametrize("status", ["Decommissioned", "Withdrawn"])
def test_an_inventory_record_over_a_terminal_device_is_applied(status: str) -> None:
    decision = decide(device(status), inventory("Commissioned"), CPL, Policy(), AT, NOW)
    assert decision.outcome == "stored" and not decision.outputs
    assert decision.record is not None and decision.record.status == "Commissioned"


# -- Registration on removed firmware --------------------------------------------------------

REMOVED_OLD = {**CPL, f"AB01:010A030B:0001:{OLD}": {"status": "Removed"}}


@pytest.mark.parametrize(("status", "device_type", "suspends"), [
    ("Commissioned", "ESME", True),
    ("InstalledNotCommissioned", "GSME", True),
    ("Suspended", "ESME", False),  # as registered, and no correction
    ("Decommissioned", "ESME", False),
    ("Commissioned", "IHD", False),  # no firmware status on the SMI
])
def test_a_device_registered_on_removed_firmware_is_suspended(
        status: str, device_type: str, suspends: bool) -> None:
    registered = inventory(status).model_copy(update={"device_type": device_type})
    decision = decide(None, registered, REMOVED_OLD, Policy(), AT, NOW)
    assert decision.record is not None
    corrections = outputs([decision], "smi.status-corrections")
    if not suspends:
        assert decision.record.status == status and not corrections
        return
    assert (decision.record.status, decision.record.status_before_suspension) == (
        "Suspended", status)
    [correction] = corrections
    assert (correction.from_status, correction.to_status, correction.cause) == (
        status, "Suspended", "cpl-removed")


def test_a_device_registered_on_firmware_the_cpl_does_not_list_is_stored_as_registered() -> None:
    decision = decide(None, inventory("Commissioned"), {}, Policy(), AT, NOW)
    assert decision.record is not None and decision.record.status == "Commissioned"
    assert decision.outcome == "stored" and not decision.outputs


# -- Awaited requests: a limit per SR, an age limit, copies ---------------------------------

def test_reads_never_push_out_an_sr11_3() -> None:
    """Unanswered SR11.2 reads from other Users fill their own list; the supplier's SR11.3
    still finds its answer."""
    policy = replace(Policy(), pending_limit=2)
    reads = [request("11.2", n, originator=OTHER) for n in range(2, 7)]
    record, d = run(device("Suspended"), request("11.3"), *reads, response("11.3", 1),
                    policy=policy)
    assert [x.outcome for x in d[1:6]] == ["accepted"] * 2 + ["accepted:pushed-out-oldest"] * 3
    [correction] = outputs(d, "smi.status-corrections")
    assert (correction.cause, correction.to_status) == ("sr11.3-response", "Commissioned")
    assert record is not None
    assert [p.request_id.rsplit(":", 1)[1] for p in record.pending] == ["5", "6"]


def test_sr11_3_retries_are_pushed_out_before_the_first() -> None:
    policy = replace(Policy(), pending_limit=2)
    record, d = run(device(), request("11.3", 1), request("11.3", 2), request("11.3", 3),
                    policy=policy)
    assert record is not None
    assert [(p.request_id[-1], p.retry) for p in record.pending] == [("1", False), ("3", True)]
    assert d[2].outcome == "accepted:pushed-out-oldest"


def test_a_request_delivered_twice_sends_one_command() -> None:
    record, d = run(device(), request("11.3"), request("11.3"))
    [command] = outputs(d, "duis.device-commands")
    assert command.retry is False
    assert d[1].outcome == "ignored:duplicate-request" and not d[1].outputs
    assert record is not None and len(record.pending) == 1


def test_another_sr_under_a_remembered_request_id_gets_its_own_answer() -> None:
    """Only a copy of the same SR is a duplicate; a sender that reuses an ID for another SR
    still gets a command, and each response settles the request of its own SR."""
    record, d = run(device(), request("11.3"), request("4.1.1"), request("11.2"),
                    response("11.2", firmware=OLD), response("11.3"))
    assert [x.outcome for x in d] == [
        "accepted", "accepted", "accepted", "unchanged", "corrected"]
    assert len(outputs(d, "duis.device-commands")) == 3
    assert record is not None and record.pending == () and record.firmware_version == NEW


def test_reads_never_push_out_an_sr11_3_under_the_same_request_id() -> None:
    """Past the SR11.2 limit, the read pushed out is the oldest read, not the SR11.3 a sender
    sent under the same ID: the SR11.3's response still lifts the suspension."""
    policy = replace(Policy(), pending_limit=2)
    reads = [request("11.2", n) for n in range(2, 5)]
    record, d = run(device("Suspended"), request("11.2", 1), request("11.3", 1), *reads,
                    response("11.3", 1), policy=policy)
    assert d[-1].outcome == "corrected", d[-1].outcome
    assert record is not None and record.status == "Commissioned"


def test_an_early_response_is_held_though_another_sr_under_its_id_was_answered() -> None:
    """An SR11.3 response that comes before its request is held for it, even when an SR11.2
    sent under the same ID has been answered: a closed request is closed for its own SR."""
    record, d = run(device("Suspended"), request("11.2"), response("11.2", firmware=OLD),
                    response("11.3"), request("11.3"))
    assert [x.outcome for x in d][2:] == ["held:no-request-yet", "accepted"]
    [correction] = outputs(d[3:], "smi.status-corrections")  # the held response, applied
    assert (correction.cause, correction.to_status) == ("sr11.3-response", "Commissioned")
    assert record is not None and record.status == "Commissioned"


@pytest.mark.parametrize("events", [
    ("request 11.2", "response 11.3", "request 11.3"),
    ("response 11.2", "response 11.3", "request 11.3"),
    ("response 11.3", "request 11.2", "request 11.3"),
])
def test_another_sr_under_the_same_id_never_takes_an_sr11_3_response(events: tuple[str, ...]
                                                                      ) -> None:
    """Whichever comes first, an SR11.2 under the same ID neither answers, nor holds the place
    of, nor takes the held response of the SR11.3: its response lifts the suspension."""
    made = {"request": request, "response": response}
    record, d = run(device("Suspended"), *(made[kind](sr) for kind, sr in map(str.split, events)))
    assert record is not None and record.status == "Commissioned", [x.outcome for x in d]
    [correction] = outputs(d, "smi.status-corrections")
    assert correction.cause == "sr11.3-response"


def test_a_request_and_its_response_delivered_again_change_nothing() -> None:
    """The copy of the response is not held, so the copy of the request applies nothing."""
    events = (request("11.2"), response("11.2"), response("11.2"), request("11.2"))
    record, d = run(device("Suspended"), *events)
    assert [x.outcome for x in d] == [
        "accepted", "corrected", "ignored:request-closed", "ignored:duplicate-request"]
    assert len(outputs(d, "duis.device-commands")) == 1
    assert len(outputs(d, "smi.status-corrections")) == 1
    assert record is not None and record.early == () and record.pending == ()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


T0 = datetime(2026, 11, 24, 8, tzinfo=UTC).timestamp()
MAX_AGE = Policy().pending_max_age


@pytest.mark.parametrize(("later", "retry"), [(MAX_AGE, True), (MAX_AGE + 1, False)])
def test_an_unanswered_sr11_3_makes_retries_only_until_the_age_limit(
        later: float, retry: bool) -> None:
    _, d = run(device(), request("11.3", 1), request("11.3", 2, at=iso(T0 + later)))
    assert outputs(d, "duis.device-commands")[1].retry is retry


@pytest.mark.parametrize(("later", "outcome"), [
    (MAX_AGE, "corrected"), (MAX_AGE + 1, "ignored:request-expired")])
def test_a_response_past_the_age_limit_finds_its_request_no_longer_awaited(
        later: float, outcome: str) -> None:
    record, d = run(device(), request("11.3"), response("11.3", at=iso(T0 + later)))
    assert d[1].outcome == outcome
    assert record is not None and record.pending == ()  # settled either way


def test_the_age_limit_is_a_setting() -> None:
    policy = replace(Policy(), pending_max_age=60.0)
    _, d = run(device(), request("11.3", 1), request("11.3", 2, at=iso(T0 + 61)), policy=policy)
    assert [c.retry for c in outputs(d, "duis.device-commands")] == [False, False]


def test_a_record_saved_before_requests_had_an_age_still_reads() -> None:
    """Awaited requests were saved with four fields: they read, and never expire."""
    saved = device().to_dict(0) | {"pending": [[f"{SUPPLIER}:{DEVICE}:1", "11.3", NEW * 8,
                                                False]]}
    record = Device.from_dict(saved)
    assert record.pending[0].at is None
    _, d = run(record, request("11.3", 2, at=iso(T0 + 10 * MAX_AGE)))
    assert outputs(d, "duis.device-commands")[0].retry is True


def test_reads_never_push_an_answered_sr11_3_out_of_the_closed_ones() -> None:
    """Its copy, delivered after many answered reads, still acts as a copy."""
    policy = replace(Policy(), pending_limit=2)
    reads = [e for n in range(2, 12) for e in (request("11.2", n, originator=OTHER),
                                                response("11.2", n))]
    events = (request("11.3"), response("11.3"), *reads, request("11.3"), response("11.3"))
    _, d = run(device(), *events, policy=policy)
    assert [x.outcome for x in d[-2:]] == ["ignored:duplicate-request",
                                           "ignored:request-closed"]


def test_a_time_without_a_zone_is_utc() -> None:
    naive = iso(T0 + MAX_AGE + 1).replace("+00:00", "")
    _, d = run(device(), request("11.3", 1), request("11.3", 2, at=naive))
    assert outputs(d, "duis.device-commands")[1].retry is False

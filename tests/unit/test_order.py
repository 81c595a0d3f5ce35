"""A response that overtakes its request (another topic, so no order between them) is held
and decided when the request arrives, with the same outcome and correction ID as in order."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from schemas.models import DeviceResponse, Inventory, ServiceRequest
from streams.core import Decision, Device, Policy, Position, decide

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)
DEVICE, SUPPLIER = "00-DB-12-34-56-78-00-01", "90-B3-D5-1F-30-01-00-00"
CPL = {f"AB01:010A030B:0001:{v}": {"status": "Active"} for v in ("0002012F", "00020130")}


def inventory(status: str = "Commissioned") -> Device:
    event = Inventory.model_validate_json(json.dumps({
        "device_id": DEVICE, "device_type": "ESME", "smets": 2, "manufacturer": "AB01",
        "model": "010A030B", "hardware_version": "0001", "firmware_version": "0002012F",
        "status": status, "supplier": SUPPLIER, "at": "2026-11-24T08:00:00Z"}))
    record = decide(None, event, CPL, Policy(), Position("i", 0, 0), NOW)
    assert record.record is not None
    return record.record


def request(counter: int, sr: str = "11.2", **extra: Any) -> ServiceRequest:
    return ServiceRequest.model_validate_json(json.dumps({
        "request_id": f"{SUPPLIER}:{DEVICE}:{counter}", "sr": sr, "originator": SUPPLIER,
        "device_id": DEVICE, "at": "2026-11-24T08:00:00Z", **extra}))


def response(counter: int, sr: str = "11.2", **extra: Any) -> DeviceResponse:
    return DeviceResponse.model_validate_json(json.dumps({
        "response_id": f"{DEVICE}:{SUPPLIER}:{counter}", "sr": sr, "device_id": DEVICE,
        "firmware_version": "00020130", "at": "2026-11-24T08:00:00Z", **extra}))


def play(record: Device, *events: Any) -> tuple[Device, list[Decision]]:
    decisions = []
    offsets: Counter[str] = Counter()  # each topic's own offsets, as on the broker
    for event in events:
        topic = "duis.service-requests" if isinstance(event, ServiceRequest) else "responses"
        source = Position(topic, 0, offsets[topic])
        offsets[topic] += 1
        decision = decide(record, event, CPL, Policy(), source, NOW)
        record = decision.record or record
        decisions.append(decision)
    return record, decisions


def corrections(decisions: list[Decision]) -> list[tuple[str, Any]]:
    return [(name, payload.correction_id) for d in decisions for name, _, payload in d.outputs
            if name == "smi.status-corrections"]


def test_response_before_its_request_is_held_then_decided() -> None:
    in_order, first = play(inventory(), request(1), response(1))
    reversed_, second = play(inventory(), response(1), request(1))
    assert second[0].outcome == "held:no-request-yet" and not second[0].outputs
    assert [n for n, _, _ in second[1].outputs] == ["duis.device-commands",
                                                     "smi.status-corrections"]
    assert (in_order.status, in_order.firmware_version) == (
        reversed_.status, reversed_.firmware_version) == ("Commissioned", "00020130")
    assert reversed_.early == () and reversed_.pending == ()
    # the correction's source is the response in both orders, hence the same ID
    assert len(corrections(first)) == 1 and corrections(first) == corrections(second)


def test_a_held_response_is_not_held_twice_and_a_rejected_request_never_uses_it() -> None:
    other = "90-B3-D5-1F-30-01-00-07"  # not the device's supplier: its SR11.3 is refused
    answer = DeviceResponse.model_validate_json(json.dumps({
        "response_id": f"{DEVICE}:{other}:2", "sr": "11.3", "device_id": DEVICE, "outcome": 0,
        "firmware_version": "00020130", "at": "2026-11-24T08:00:00Z"}))
    activate = ServiceRequest.model_validate_json(json.dumps({
        "request_id": f"{other}:{DEVICE}:2", "sr": "11.3", "originator": other,
        "device_id": DEVICE, "firmware_hash": "AB" * 32, "at": "2026-11-24T08:00:00Z"}))
    record, decisions = play(inventory("Suspended"), answer, answer, activate)
    assert decisions[1].outcome == "ignored:duplicate"
    assert decisions[2].outcome == "rejected:not-authorised"
    assert record.status == "Suspended" and len(record.early) == 1


def test_responses_that_cannot_correct_are_not_held_so_cannot_push_out_one_that_can() -> None:
    reads = [response(100 + n, "4.1.1") for n in range(40)]
    record, decisions = play(inventory("Suspended"), response(1), *reads, request(1))
    assert {d.outcome for d in decisions[1:-1]} == {"ignored:no-request-awaiting"}
    assert (record.status, record.firmware_version) == ("Commissioned", "00020130")


def test_lower_case_request_ids_are_matched_by_their_response() -> None:
    lower = request(5).request_id.lower()
    asked = ServiceRequest.model_validate_json(json.dumps({
        "request_id": lower, "sr": "11.2", "originator": SUPPLIER.lower(),
        "device_id": DEVICE.lower(), "at": "2026-11-24T08:00:00Z"}))
    for events in ((asked, response(5)), (response(5), asked)):
        record, decisions = play(inventory("Suspended"), *events)
        assert (record.status, record.firmware_version) == ("Commissioned", "00020130")
        [command] = [p for d in decisions for n, _, p in d.outputs if n == "duis.device-commands"]
        assert command.request_id == lower  # the command goes out as received


def test_duplicate_response_after_the_answer_changes_nothing() -> None:
    """Its request is closed: the copy is not held for a request that will not come again."""
    record, decisions = play(inventory(), request(3), response(3), response(3), response(3))
    assert [d.outcome for d in decisions] == [
        "accepted", "corrected", "ignored:request-closed", "ignored:request-closed"]
    assert sum(len(d.outputs) for d in decisions[2:]) == 0
    assert record.firmware_version == "00020130" and record.early == ()

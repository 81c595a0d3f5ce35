"""The contract (docs/contract.md) at the edge: what input is accepted, what is refused and
how it is explained, and the JSON Schemas kept for producers in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import export
from schemas.codec import decode_input, dumps
from schemas.models import (
    CplRemoval,
    DeadLetter,
    DeviceResponse,
    Inventory,
    Rejection,
    ServiceRequest,
    device_key,
    source_id,
)
from streams.errors import InvalidEvent

DEVICE, SUPPLIER = "00-DB-12-34-56-78-00-01", "90-B3-D5-1F-30-01-00-00"
LIMIT = 64 * 1024


def sr(**fields: Any) -> dict[str, Any]:
    return {"request_id": f"{SUPPLIER}:{DEVICE}:1001", "sr": "11.2", "originator": SUPPLIER,
            "device_id": DEVICE, "at": "2026-11-24T08:00:00Z", **fields}


def inventory(**fields: Any) -> dict[str, Any]:
    return {"device_id": DEVICE, "device_type": "ESME", "smets": 2, "manufacturer": "AB01",
            "model": "010A030B", "hardware_version": "0001", "firmware_version": "0002012F",
            "status": "Commissioned", "supplier": SUPPLIER, "gpf_id": None,
            "at": "2026-11-24T08:00:00Z", **fields}


def decode(kind: str, payload: Any, key: str | None = DEVICE) -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_input(kind, key.encode() if key else None, raw, LIMIT)


def test_lower_case_ids_are_accepted_and_stored_upper_case() -> None:
    event = decode("duis.service-requests", sr(
        request_id=f"{SUPPLIER.lower()}:{DEVICE.lower()}:1001", originator=SUPPLIER.lower(),
        device_id=DEVICE.lower()), key=DEVICE.lower())
    assert isinstance(event, ServiceRequest)
    assert (event.device_id, event.originator) == (DEVICE, SUPPLIER)


def test_unknown_fields_are_ignored_but_an_sr_keeps_them_for_the_device() -> None:
    event = decode("smi.inventory", inventory(colour="blue"))
    assert isinstance(event, Inventory) and "colour" not in event.model_dump()
    request = decode("duis.service-requests", sr(read_window="P1D"))
    assert request.model_dump()["read_window"] == "P1D"


@pytest.mark.parametrize(("kind", "payload", "key", "says"), [
    ("duis.service-requests", b"{not json", DEVICE, "not valid JSON"),
    ("duis.service-requests", b"[1, 2]", DEVICE, "expected a JSON object"),
    ("duis.service-requests", sr(device_id="00-DB-12-34"), DEVICE,
     "device_id: '00-DB-12-34' is not an EUI-64"),
    ("duis.service-requests", sr(sr="READ"), DEVICE, "sr"),
    ("duis.service-requests", sr(sr=11.2), DEVICE, "sr"),
    ("duis.service-requests", sr(sr="11.3"), DEVICE, "firmware_hash"),
    ("duis.service-requests", sr(sr="11.3", firmware_hash="AB" * 31), DEVICE, "firmware_hash"),
    ("duis.service-requests", sr(request_id="1001"), DEVICE, "request_id"),
    ("duis.service-requests", sr(request_id=f"{SUPPLIER}:{DEVICE}:\u00b2"), DEVICE,
     "request_id"),  # a digit to str.isdigit(), not to int()
    ("duis.service-requests", sr(originator="90-B3-D5-1F-30-01-00-09"), DEVICE, "request_id"),
    ("smi.inventory", inventory(firmware_version="2012F"), DEVICE,
     "firmware_version: '2012F' is not a firmware version"),
    ("smi.inventory", inventory(status="Happy"), DEVICE, "status"),
    ("smi.inventory", inventory(device_type="TOASTER"), DEVICE, "device_type"),
    ("smi.inventory", inventory(smets="2"), DEVICE, "smets"),
    ("smi.inventory", inventory(at="yesterday"), DEVICE, "at"),
    ("smi.inventory", {"device_id": DEVICE}, DEVICE, "supplier"),
    ("duis.device-responses", {"response_id": f"{DEVICE}:{SUPPLIER}:1", "sr": "11.3",
                               "device_id": DEVICE, "firmware_version": "00020130",
                               "outcome": "0", "at": "2026-11-24T08:00:00Z"}, DEVICE, "outcome"),
    ("duis.device-responses", {"response_id": f"{DEVICE}:{SUPPLIER}:1", "sr": "11.3",
                               "device_id": DEVICE, "firmware_version": "00020130",
                               "at": "2026-11-24T08:00:00Z"}, DEVICE, "outcome"),
    # a JSON boolean or a float is not a number of the contract's, though false == 0 in
    # Python: a failed activation sent as false must not count as a success
    ("duis.device-responses", {"response_id": f"{DEVICE}:{SUPPLIER}:1", "sr": "11.3",
                               "device_id": DEVICE, "firmware_version": "00020130",
                               "outcome": False, "at": "2026-11-24T08:00:00Z"}, DEVICE,
     "outcome: Input should be a valid integer"),
    ("duis.device-responses", {"response_id": f"{DEVICE}:{SUPPLIER}:1", "sr": "11.3",
                               "device_id": DEVICE, "firmware_version": "00020130",
                               "outcome": 1.0, "at": "2026-11-24T08:00:00Z"}, DEVICE, "outcome"),
    ("smi.inventory", inventory(smets=True), DEVICE, "smets: Input should be a valid integer"),
    ("duis.device-responses", {"response_id": f"{DEVICE}:{SUPPLIER}\n:1", "sr": "11.2",
                               "device_id": DEVICE, "firmware_version": "00020130",
                               "at": "2026-11-24T08:00:00Z"}, DEVICE, "response_id"),
    ("cpl.entries", {"manufacturer": "AB01"}, "AB01:010A030B:0001:0002012F", "model"),
])
def test_bad_input_is_refused_in_words(kind: str, payload: Any, key: str | None,
                                       says: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode(kind, payload, key)
    assert says in str(refused.value)


def test_oversized_and_empty_values_are_refused() -> None:
    with pytest.raises(InvalidEvent, match="over the 65536-byte limit") as oversized:
        decode("duis.service-requests", sr(padding="x" * LIMIT))
    assert oversized.value.request_id == f"{SUPPLIER}:{DEVICE}:1001"  # its sender is told
    with pytest.raises(InvalidEvent, match="tombstone"):
        decode_input("duis.service-requests", DEVICE.encode(), None, LIMIT)


def test_a_broken_sr_keeps_its_readable_request_id() -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode("duis.service-requests", sr(device_id="00-DB"))
    assert refused.value.request_id == f"{SUPPLIER}:{DEVICE}:1001"
    assert (refused.value.device_id, refused.value.sr) == ("00-DB", "11.2")
    with pytest.raises(InvalidEvent) as unreadable:
        decode("duis.service-requests", b'{"request_id": 7}')
    assert unreadable.value.request_id is None


def test_a_gpf_copy_belongs_to_its_gsme_whatever_its_key() -> None:
    """The payload names the device a message is about; the key only placed it (a record on
    another partition than its device's is forwarded there, streams/repartition.py)."""
    gsme = "00-DB-12-34-56-78-00-03"
    payload = {"response_id": f"{DEVICE}:{SUPPLIER}:1", "sr": "11.2", "device_id": DEVICE,
               "gsme_id": gsme, "firmware_version": "00020130", "at": "2026-11-24T08:00:00Z"}
    for key in (gsme, DEVICE, gsme.lower(), None):
        event = decode("duis.device-responses", payload, key=key)
        assert isinstance(event, DeviceResponse) and device_key(event) == gsme
    assert event.request_id == f"{SUPPLIER}:{DEVICE}:1"


def test_each_input_names_its_device_and_its_own_id() -> None:
    """The key a device's messages carry and the ID a correction's source names, for every
    input model, and for a subclass of one (they are looked up by class)."""
    request = decode("duis.service-requests", sr())
    response = decode("duis.device-responses", {
        "response_id": f"{DEVICE}:{SUPPLIER}:1", "sr": "11.2", "device_id": DEVICE,
        "firmware_version": "00020130", "at": "2026-11-24T08:00:00Z"})
    stored = decode("smi.inventory", inventory())
    entry = decode("cpl.entries", {
        "manufacturer": "AB01", "model": "010A030B", "hardware_version": "0001",
        "firmware_version": "0002012F", "firmware_hash": "0002012F" * 8, "status": "Removed",
        "at": "2026-11-24T08:00:00Z"})
    assert [device_key(e) for e in (request, response, stored)] == [DEVICE] * 3
    assert device_key(entry) == "AB01:010A030B:0001:0002012F"
    assert [source_id(e) for e in (request, response, stored, entry)] == [
        f"{SUPPLIER}:{DEVICE}:1001", f"{DEVICE}:{SUPPLIER}:1", None, device_key(entry)]

    class Later(ServiceRequest):
        pass

    later = Later.model_validate(request.model_dump())
    assert (device_key(later), source_id(later)) == (DEVICE, f"{SUPPLIER}:{DEVICE}:1001")
    with pytest.raises(TypeError, match="Rejection has no device key"):
        device_key(Rejection.model_construct())  # type: ignore[arg-type]


def test_the_codec_round_trips_the_control_message() -> None:
    entry = {"manufacturer": "AB01", "model": "010A030B", "hardware_version": "0001",
             "firmware_version": "0002012F", "firmware_hash": "0002012F" * 8,
             "status": "Removed", "at": "2026-11-24T08:00:00Z"}
    removal = CplRemoval.model_validate_json(json.dumps(
        {"entry": entry, "source": {"topic": "cpl.entries", "partition": 2, "offset": 9}}))
    assert CplRemoval.model_validate_json(dumps(removal)) == removal
    assert b'"id"' not in dumps(removal)  # None fields are left out of the wire form


def test_outputs_name_every_contract_field_even_when_null() -> None:
    rejection = Rejection(request_id="x", device_id=None, sr=None, reason="invalid-request",
                          response_code="E1", at="2026-11-24T08:00:00Z")
    assert {"device_id": None, "sr": None}.items() <= orjson.loads(dumps(rejection)).items()
    letter = DeadLetter(topic="smi.inventory", partition=0, offset=1, key=None, value="",
                        error="e", at="2026-11-24T08:00:00Z")
    assert orjson.loads(dumps(letter))["key"] is None


def test_inventory_cannot_restore_suspended_to_suspended() -> None:
    with pytest.raises(InvalidEvent, match="status_before_suspension"):
        decode("smi.inventory", inventory(status="Suspended", status_before_suspension="Suspended"))


def test_json_schemas_are_the_models() -> None:
    for name, text in export.schemas().items():
        committed = export.OUT / name
        assert committed.exists(), f"{name} missing: run python -m schemas.export"
        assert committed.read_text() == text, f"{name} drifted: run python -m schemas.export"


def test_json_schemas_carry_the_patterns_other_languages_need() -> None:
    schema = json.loads((export.OUT / "duis.service-requests.schema.json").read_text())
    assert schema["properties"]["device_id"]["pattern"] == "^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}$"
    assert set(schema["required"]) >= {"request_id", "sr", "originator", "device_id", "at"}


def test_the_schemas_stand_alone() -> None:
    """Other services can use the models without faust or the worker."""
    import subprocess
    import sys

    code = ("import sys, schemas.codec, schemas.export, schemas.models, schemas.topics; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'streams', 'mode'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_a_worker_imports_none_of_the_tools() -> None:
    """What a worker runs stays small: the tools (``streams.tools``: replay, verify, rebuild,
    the simulator, the demo) and the CLI's helpers (and matplotlib) are not loaded."""
    import subprocess
    import sys

    code = ("import sys, streams.worker, streams.app, streams.web; "
            "print(sorted(m for m in sys.modules if m.startswith(('streams.tools', "
            "'streams.cli'))) + sorted({'matplotlib'} & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_no_runtime_module_names_a_tool() -> None:
    """Not even a lazy import: every module of ``streams`` outside ``streams/tools`` and
    ``streams/cli`` leaves the tools alone."""
    import ast

    package = Path(__file__).resolve().parents[2] / "streams"
    offenders = []
    for path in package.rglob("*.py"):
        if {"tools", "cli"} & set(path.relative_to(package).parts[:-1]):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("streams.tools")]
    assert offenders == []

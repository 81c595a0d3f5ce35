"""Property-based: no payload, however broken, makes a decoder or the rules raise anything but
``InvalidEvent``; whatever decodes can be decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import decode_input
from schemas.models import device_key
from streams.core import Device, Policy, Position, decide
from streams.errors import InvalidEvent

KINDS = ("cpl.entries", "smi.inventory", "duis.service-requests", "duis.device-responses")
EUIS = ("00-DB-12-34-56-78-00-01", "00-db-12-34-56-78-00-02", "90-B3-D5-1F-30-01-00-00",
        "00-DB-12-34-56-78-00", "nonsense", "")
FIELDS = {
    "device_id": st.sampled_from(EUIS), "originator": st.sampled_from(EUIS),
    "supplier": st.sampled_from(EUIS), "gpf_id": st.sampled_from((*EUIS, None)),
    "gsme_id": st.sampled_from((*EUIS, None)),
    "request_id": st.sampled_from(("90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-00-01:7", "a:b:c",
                                   "", "x" * 500)),
    "response_id": st.sampled_from(("00-DB-12-34-56-78-00-01:90-B3-D5-1F-30-01-00-00:7", "::")),
    "sr": st.sampled_from(("11.1", "11.2", "11.3", "4.1.1", "99", "11.", 11.2)),
    "device_type": st.sampled_from(("ESME", "GSME", "GPF", "IHD", "PPMID", "esme", 3)),
    "status": st.sampled_from(("Commissioned", "Suspended", "Active", "Removed", "Withdrawn")),
    "firmware_version": st.sampled_from(("0002012F", "00020130", "2012F", "zzzzzzzz", None)),
    "firmware_hash": st.sampled_from(("AB" * 32, "AB" * 31, None)),
    "outcome": st.sampled_from((0, 1, 3, 4, "0", None, True)),
    "smets": st.sampled_from((1, 2, 3, "2")),
    "manufacturer": st.sampled_from(("AB01", "", "G")), "model": st.just("010A030B"),
    "hardware_version": st.just("0001"),
    "at": st.sampled_from(("2026-11-24T08:00:00Z", "yesterday", 0)),
    "entry": st.just({}), "source": st.just({"topic": "x", "partition": 0, "offset": 1}),
}
payloads = st.fixed_dictionaries({}, optional=FIELDS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
RECORD = Device("00-DB-12-34-56-78-00-01", "ESME", 2, "AB01", "010A030B", "0001", "0002012F",
                "Suspended", "90-B3-D5-1F-30-01-00-00", status_before_suspension="Commissioned")
CPL = {"AB01:010A030B:0001:00020130": {"status": "Active"}}
NOW = datetime(2026, 11, 24, tzinfo=UTC)
AT = Position("fuzz", 0, 0)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_and_decide(kind: str, key: bytes | None, raw: bytes) -> None:
    try:
        event = decode_input(kind, key, raw, 64 * 1024)
    except InvalidEvent as exc:
        assert str(exc)  # the dead letter always says what was wrong
        return
    if kind == "cpl.entries":
        return
    for record in (None, RECORD):
        decide(record, event, CPL, Policy(), AT, NOW)


@FUZZ
@given(kind=st.sampled_from(KINDS), key=st.none() | st.binary(max_size=40), raw=st.binary())
def test_arbitrary_bytes_never_escape(kind: str, key: bytes | None, raw: bytes) -> None:
    decode_and_decide(kind, key, raw)


@FUZZ
@given(kind=st.sampled_from(KINDS), value=json_values)
def test_arbitrary_json_never_escapes(kind: str, value: Any) -> None:
    decode_and_decide(kind, b"00-DB-12-34-56-78-00-01", json.dumps(value).encode())


@FUZZ
@given(kind=st.sampled_from(KINDS), payload=payloads)
def test_near_valid_payloads_decode_or_are_refused(kind: str, payload: dict[str, Any]) -> None:
    raw = orjson.dumps(payload)
    try:
        key = device_key(decode_input(kind, None, raw, 64 * 1024)).encode()
    except (InvalidEvent, TypeError):
        key = b"00-DB-12-34-56-78-00-01"
    decode_and_decide(kind, key, raw)

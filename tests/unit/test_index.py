"""The index a CPL removal uses to find the devices it suspends."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.core.records import Device
from streams.index import DevicesByFirmware, pack, unpack

A, B = "00-DB-03-00-00-00-01-00", "00-DB-03-00-00-00-02-00"


def record(firmware: str, partition: int, status: str = "Commissioned",
           device_type: str = "ESME") -> dict[str, Any]:
    return {"manufacturer": "AB01", "model": "010A030B", "hardware_version": "0001",
            "firmware_version": firmware, "partition": partition, "status": status,
            "device_type": device_type}


def device(firmware: str, status: str = "Commissioned", device_type: str = "ESME") -> Device:
    """A record as the agents write it (the index reads dicts only when it is built)."""
    return Device(device_id=A, device_type=device_type, smets=2, manufacturer="AB01",
                  model="010A030B", hardware_version="0001", firmware_version=firmware,
                  status=status, supplier="90-B3-D5-1F-30-01-00-01")


def key(firmware: str) -> str:
    return f"AB01:010A030B:0001:{firmware}"


def built(items: list[tuple[str, dict[str, Any]]]) -> DevicesByFirmware:
    index = DevicesByFirmware()
    asyncio.run(index.build(items))
    return index


def test_device_ids_round_trip_through_their_integer_form() -> None:
    assert unpack(pack(A)) == A
    assert unpack(pack("FF-FF-FF-FF-FF-FF-FF-FF")) == "FF-FF-FF-FF-FF-FF-FF-FF"


def test_candidates_are_those_of_the_partition_and_firmware() -> None:
    index = built([(A, record("0002012F", 0)), (B, record("0002012F", 1))])
    assert index.take(0, key("0002012F")) == [A]
    assert index.take(1, key("0002012F")) == [B]
    assert index.take(0, key("00020130")) == []


def test_only_devices_a_removal_would_suspend_are_indexed() -> None:
    index = built([(A, record("0002012F", 0, status="Suspended")),
                   (B, record("0002012F", 0, status="Decommissioned")),
                   ("00-DB-03-00-00-00-03-00", record("0002012F", 0, device_type="IHD"))])
    assert index.take(0, key("0002012F")) == []


def test_a_removal_takes_its_candidates_and_writes_bring_them_back() -> None:
    index = built([(A, record("0002012F", 0))])
    assert index.take(0, key("0002012F")) == [A]
    assert index.take(0, key("0002012F")) == []  # a second copy of the removal finds none
    suspended = device("0002012F", status="Suspended")
    index.on_write(0, A, device("0002012F"), suspended)
    assert index.take(0, key("0002012F")) == []
    index.on_write(0, A, suspended, device("0002012F"))  # restored: suspendable again
    assert index.take(0, key("0002012F")) == [A]


def test_writes_after_the_build_are_indexed_once() -> None:
    index = built([(A, record("0002012F", 0))])
    index.on_write(0, B, None, device("00020130"))
    index.on_write(0, A, device("0002012F"), device("00020130"))
    index.on_write(0, A, device("00020130"), device("00020130"))  # no change: no entry
    index.on_write(0, A, device("00020130"), device("00020130", status="Suspended"))
    index.on_write(0, A, device("00020130", status="Suspended"), device("00020130"))
    assert index.take(0, key("00020130")) == [A, B]


def test_nothing_is_indexed_before_a_build_or_after_a_rebalance() -> None:
    index = DevicesByFirmware()
    index.on_write(0, A, None, device("0002012F"))
    assert not index.built and index.take(0, key("0002012F")) == []
    index = built([(A, record("0002012F", 0))])
    index.clear()
    assert not index.built and index.take(0, key("0002012F")) == []

"""The index a CPL removal uses to find the devices it suspends."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.index import DevicesByFirmware, pack, unpack

A, B = "00-DB-03-00-00-00-01-00", "00-DB-03-00-00-00-02-00"


def record(firmware: str, partition: int) -> dict[str, Any]:
    return {"manufacturer": "AB01", "model": "010A030B", "hardware_version": "0001",
            "firmware_version": firmware, "partition": partition}


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
    assert index.candidates(0, key("0002012F")) == [A]
    assert index.candidates(1, key("0002012F")) == [B]
    assert index.candidates(0, key("00020130")) == []


def test_writes_after_the_build_are_indexed_once() -> None:
    index = built([(A, record("0002012F", 0))])
    index.add(0, B, record("00020130", 0))
    index.add(0, A, record("00020130", 0))
    index.add(0, A, record("00020130", 0))
    assert index.candidates(0, key("00020130")) == [A, B]


def test_nothing_is_indexed_before_a_build_or_after_a_rebalance() -> None:
    index = DevicesByFirmware()
    index.add(0, A, record("0002012F", 0))
    assert not index.built and index.candidates(0, key("0002012F")) == []
    index = built([(A, record("0002012F", 0))])
    index.clear()
    assert not index.built and index.candidates(0, key("0002012F")) == []

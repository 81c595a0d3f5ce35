"""An input message as the processor reads it, without Kafka (``streams.agents.Incoming``)."""

from __future__ import annotations

from typing import NamedTuple


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

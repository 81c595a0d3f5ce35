"""The domain rules (docs/domain.md) as plain functions over plain records: no I/O, no clock."""

from streams.core.decide import Decision, decide
from streams.core.policy import Policy
from streams.core.records import Device, Pending, Position

__all__ = ["Decision", "Device", "Pending", "Policy", "Position", "decide"]

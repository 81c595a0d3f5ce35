"""Event models for every topic of the wire contract, the codec, and the JSON Schema export."""

from schemas.models import (
    CplEntry,
    CplRemoval,
    DeadLetter,
    DeviceCommand,
    DeviceResponse,
    Inventory,
    N52Alert,
    Rejection,
    ServiceRequest,
    Source,
    StatusCorrection,
)

__all__ = [
    "CplEntry",
    "CplRemoval",
    "DeadLetter",
    "DeviceCommand",
    "DeviceResponse",
    "Inventory",
    "N52Alert",
    "Rejection",
    "ServiceRequest",
    "Source",
    "StatusCorrection",
]

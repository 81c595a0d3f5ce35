"""The one place input bytes become events, and how outputs and table values become bytes
(faust's codecs over these are in ``streams/codecs.py``).

Input topics are read as raw bytes and turned into events by :func:`decode_input`, not by a
faust codec: faust logs and skips a message whose codec raises, which would drop bad input
silently, and a codec cannot see which topic (so which model) the bytes came from.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from schemas import topics
from schemas.errors import InvalidEvent
from schemas.models import (
    INPUT_MODELS,
    PATTERN_DESCRIPTIONS,
    Event,
)

_MODELS: dict[str, type[Event]] = INPUT_MODELS


def dumps(obj: Any) -> bytes:
    """orjson for pydantic models (without their unset optional fields, where the model says
    so) and plain values: outputs and table values."""
    if type(obj) is dict:  # a table value: no isinstance of a model (an ABC check, slow)
        return orjson.dumps(obj)
    if isinstance(obj, BaseModel):
        omit_none = getattr(obj, "omit_none", True)
        json: bytes = obj.__pydantic_serializer__.to_json(obj, exclude_none=omit_none)
        return json
    return orjson.dumps(obj)


def decode_input(
    kind: str, key: bytes | None, value: bytes | None, max_bytes: int
) -> Event:
    """Validate one input message of contract topic ``kind``; raise :class:`InvalidEvent`.
    The key is not checked: the payload names the device (a record keyed otherwise is sent to
    its device's partition by the worker, ``streams/repartition.py``)."""
    if value is None:
        raise InvalidEvent("the message has no value (a tombstone): expected a JSON object")
    if len(value) > max_bytes:
        raise InvalidEvent(f"the value is {len(value)} bytes, over the {max_bytes}-byte limit",
                           *_readable_request(kind, value))
    try:
        event = _MODELS[kind].model_validate_json(value)
    except ValidationError as exc:
        raise InvalidEvent(describe(exc), *_readable_request(kind, value)) from None
    return event


def describe(exc: ValidationError) -> str:
    """A validation error in words a person can act on: one 'field: problem' per error."""
    errors = exc.errors(include_url=False)
    missing = [".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "missing"]
    parts = [f"missing {', '.join(missing)}"] if missing else []
    for error in [e for e in errors if e["type"] != "missing"][:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "json_invalid":
            parts.append(f"not valid JSON ({message.removeprefix('Invalid JSON: ')})")
        elif error["type"] == "model_type":
            parts.append("expected a JSON object")
        elif error["type"] == "string_pattern_mismatch":
            what = PATTERN_DESCRIPTIONS.get(error["ctx"]["pattern"], "in the expected form")
            parts.append(f"{where}: {error['input']!r} is not {what}")
        else:
            parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _readable_request(kind: str, value: bytes) -> tuple[str | None, str | None, str | None]:
    """A broken service request's ``request_id``, ``device_id`` and ``sr``, those that can be
    read as short text, so that its sender can be told; none for other topics."""
    if kind != topics.REQUESTS:
        return None, None, None
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    request_id, device_id, sr = (_text(payload.get(n)) for n in ("request_id", "device_id", "sr"))
    return request_id, device_id, sr


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 120 else None

"""The schemas' own errors, and the root of every error this project raises on purpose
(``streams/errors.py`` draws the whole tree). Free of faust, like the rest of ``schemas``."""

from __future__ import annotations


class SmiError(Exception):
    """Root of this project's exceptions. ``retriable``: the same call may succeed later,
    unchanged (as aiokafka's errors say)."""

    retriable = False


class InvalidEvent(SmiError, ValueError):
    """An input message that fails decoding or validation.

    ``request_id`` is set when the message was a service request whose ``request_id`` could
    still be read, so that its sender can be told (``invalid-request``); ``device_id`` and
    ``sr`` likewise, when they could be read as text, for that rejection.
    """

    def __init__(self, message: str, request_id: str | None = None,
                 device_id: str | None = None, sr: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.device_id = device_id
        self.sr = sr

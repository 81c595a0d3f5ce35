"""The policy switches of docs/domain.md ("Policies") and the settings the rules read."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_EXCEPTIONS = frozenset({"11.1", "11.3", "8.2", "8.3", "8.4"})
# An SR11.x unanswered for a week is taken as lost: a device that is reachable at all answers
# within hours, and a request kept for ever would make every later SR11.3 a "retry".
DEFAULT_PENDING_MAX_AGE = 7 * 24 * 3600.0


# The four policies by name: (SR11.2 allowed while Suspended and reconciling, SR11.3 retry
# responses reconciling). The response to a first SR11.3 reconciles under all four.
POLICY_SWITCHES = {
    "baseline": (False, False),
    "sr11.2": (True, False),
    "retry": (False, True),
    "mp105": (True, True),
}
_NAMES = {switches: name for name, switches in POLICY_SWITCHES.items()}


@dataclass(frozen=True)
class Policy:
    sr11_2_when_suspended: bool = True
    sr11_3_retry_updates_smi: bool = True
    secmp0007: bool = False
    suspended_exceptions: frozenset[str] = DEFAULT_EXCEPTIONS
    response_codes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    pending_limit: int = 16  # per SR: reads never push an SR11.3 out
    pending_max_age: float = DEFAULT_PENDING_MAX_AGE  # seconds, from the request's own time

    def response_code(self, reason: str) -> str:
        return self.response_codes.get(reason, reason)

    @property
    def name(self) -> str:
        """A short label for reports: baseline, sr11.2, retry or mp105 (both), +secmp0007."""
        label = _NAMES[(self.sr11_2_when_suspended, self.sr11_3_retry_updates_smi)]
        return f"{label}+secmp0007" if self.secmp0007 else label

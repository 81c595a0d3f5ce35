"""The policy switches of DOMAIN.md section 6 and the settings the rules read."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_EXCEPTIONS = frozenset({"11.1", "11.3", "8.2", "8.3", "8.4"})


@dataclass(frozen=True)
class Policy:
    sr11_2_when_suspended: bool = True
    sr11_3_retry_updates_smi: bool = True
    secmp0007: bool = False
    suspended_exceptions: frozenset[str] = DEFAULT_EXCEPTIONS
    response_codes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    pending_limit: int = 16

    def response_code(self, reason: str) -> str:
        return self.response_codes.get(reason, reason)

    @property
    def name(self) -> str:
        """A short label for reports: which of the three switches are on."""
        on = [
            label
            for label, value in (
                ("sr11.2", self.sr11_2_when_suspended),
                ("retry", self.sr11_3_retry_updates_smi),
                ("secmp0007", self.secmp0007),
            )
            if value
        ]
        return "+".join(on) or "baseline"

"""Counters kept by the agents and shown by ``/metrics`` (Prometheus text) and ``/stats``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping


class Metrics:
    """Plain counters: cheap enough to bump on every event."""

    def __init__(self) -> None:
        self.messages_in: Counter[str] = Counter()  # by contract topic
        self.messages_out: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (topic, outcome)
        self.dead_letters: Counter[str] = Counter()
        # sent on to the device's partition (streams/repartition.py): counted in, and
        # accounted for, where they are decided
        self.forwarded: Counter[str] = Counter()
        self.corrections: Counter[str] = Counter()  # by cause

    def accounted(self) -> dict[str, dict[str, int]]:
        """Per input topic: processed, rejected, dead-lettered; they add up to messages in."""
        out: dict[str, dict[str, int]] = {}
        for (topic, outcome), n in self.outcomes.items():
            bucket = out.setdefault(topic, {"processed": 0, "rejected": 0, "dead_lettered": 0})
            if outcome.startswith("rejected:"):
                bucket["rejected"] += n
            elif outcome == "dead-lettered":
                bucket["dead_lettered"] += n
            else:
                bucket["processed"] += n
        return out

    def prometheus(self, gauges: dict[str, float], recent_reads: Mapping[str, int]) -> str:
        """``recent_reads``: record reads by result, ``hit`` or ``miss`` of the recent records
        (``streams.tables.RecentRecords``)."""
        lines = [
            "# TYPE smi_messages_in_total counter",
            *(f'smi_messages_in_total{{topic="{t}"}} {n}' for t, n in self.messages_in.items()),
            "# TYPE smi_messages_out_total counter",
            *(f'smi_messages_out_total{{topic="{t}"}} {n}' for t, n in self.messages_out.items()),
            "# TYPE smi_outcomes_total counter",
            *(
                f'smi_outcomes_total{{topic="{t}",outcome="{o}"}} {n}'
                for (t, o), n in self.outcomes.items()
            ),
            "# TYPE smi_dead_letters_total counter",
            *(f'smi_dead_letters_total{{topic="{t}"}} {n}' for t, n in self.dead_letters.items()),
            "# TYPE smi_forwarded_total counter",
            *(f'smi_forwarded_total{{topic="{t}"}} {n}' for t, n in self.forwarded.items()),
        ]
        lines.append("# TYPE smi_corrections_total counter")
        lines += [f'smi_corrections_total{{cause="{c}"}} {n}' for c, n in self.corrections.items()]
        lines.append("# TYPE smi_recent_record_reads_total counter")
        lines += [f'smi_recent_record_reads_total{{result="{r}"}} {n}'
                  for r, n in recent_reads.items()]
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"

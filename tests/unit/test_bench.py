"""The benchmark's results say which settings they were measured under, secrets left out, and
where a latency was spent."""

from __future__ import annotations

import pytest

from bench.latency import summary
from bench.run import environment


def test_results_name_the_settings_taken_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMI_BATCH_SIZE", "250")
    monkeypatch.setenv("SMI_API_TOKEN", "s3cret")
    monkeypatch.setenv("SMI_SASL_PASSWORD_FILE", "/run/secrets/kafka")
    monkeypatch.setenv("SMI_SSL_KEY_PASSWORD", "s3cret")
    monkeypatch.setenv("OTHER_BATCH_SIZE", "1")
    found = environment()
    assert found["SMI_BATCH_SIZE"] == "250"
    assert not {"SMI_API_TOKEN", "SMI_SASL_PASSWORD_FILE", "SMI_SSL_KEY_PASSWORD",
                "OTHER_BATCH_SIZE"} & set(found)


def test_a_latency_is_split_at_the_answer_handed_to_the_workers_producer() -> None:
    sent = {f"r{n}": float(n) for n in range(100)}
    handed = {r: at + 0.010 + (0.090 if r == "r7" else 0.0) for r, at in sent.items()}
    seen = {r: at + 0.030 for r, at in handed.items()}  # 30 ms to deliver each
    row = summary(sent, seen, 100, 1.0, 0.0, handed)
    assert (row["p50_ms"], row["p99_ms"], row["max_ms"]) == (40.0, 130.0, 130.0)
    assert (row["to_producer_p50_ms"], row["to_producer_p99_ms"]) == (10.0, 100.0)
    # the Kafka Streams peer stamps its answers with its input's time: no split
    assert "to_producer_p50_ms" not in summary(sent, seen, 100, 1.0, 0.0)

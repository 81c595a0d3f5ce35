"""The benchmark's results say which settings they were measured under, secrets left out."""

from __future__ import annotations

import pytest

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

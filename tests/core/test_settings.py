"""Settings: one class, documented everywhere a newcomer looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", [".env.example", "README.md"])
def test_every_setting_is_documented(document: str) -> None:
    text = (REPO / document).read_text()
    missing = [
        f"OCTAVIUS_{name.upper()}"
        for name in Settings.model_fields
        if f"OCTAVIUS_{name.upper()}" not in text
    ]
    assert missing == []


def test_every_setting_has_a_description() -> None:
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_settings_read_the_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTAVIUS_CHUNK_TOKENS", "150")
    monkeypatch.setenv("OCTAVIUS_FUSION_WEIGHTS_ES", "[0.5, 1.5]")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.chunk_tokens == 150
        assert settings.fusion_weights_es == (0.5, 1.5)
    finally:
        get_settings.cache_clear()


def test_settings_reject_out_of_range_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("OCTAVIUS_CHUNK_TOKENS", "5")
    with pytest.raises(ValidationError):
        Settings()

"""Language detection for documents and short search queries."""

from __future__ import annotations

import pytest

from core.language import detect_language, detect_query_language, guess_language

ES_TEXT = (
    "La configuración de la red de cada servidor está en un único archivo. Edítelo con "
    "cuidado y reinicie el servicio de red para que las nuevas direcciones tengan efecto."
)
EN_TEXT = (
    "The network configuration of every server lives in a single file. Edit it with care, "
    "then restart the networking service so that the new addresses take effect."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ES_TEXT, "es"),  # Spanish prose
        (EN_TEXT, "en"),  # English prose
        (ES_TEXT * 2_000, "es"),  # long text: sampled windows
        (f"{ES_TEXT}\n\nsudo systemctl restart networking", "es"),  # prose with a command
        ("Ce document décrit la politique de sécurité de l'entreprise. Tous les employés "
         "doivent la respecter.", "other"),  # French
        ("Dieses Dokument beschreibt die Sicherheitsrichtlinie des Unternehmens. Alle "
         "Mitarbeiter müssen sie einhalten.", "other"),  # German
        ("Este documento descreve a política de segurança da empresa. Todos os funcionários "
         "devem cumpri-la.", "other"),  # Portuguese, Spanish's closest neighbour here
        ("Привет, как дела? Это тестовый документ.", "other"),  # Cyrillic script
        ("这是一个关于网络配置的中文文档。", "other"),  # Chinese script
        ("1234 5678 90", "other"),  # no letters
        ("", "other"),  # nothing at all
        ("Guten Morgen, wie geht es dir?", "other"),  # short German, despite "es"
        ("Bonjour tout le monde", "other"),  # short French
    ],
)  # fmt: skip
def test_detect_language_texts(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("¿cómo configuro la red?", "es"),  # question marks and accents
        ("how do I configure the network", "en"),  # English function words
        ("¿Qué es Debian?", "es"),  # product name inside Spanish
        ("what is debian", "en"),  # lower case, no punctuation
        ("política de contraseñas", "es"),  # ñ
        ("password policy", "en"),  # two content words
        ("reiniciar el servicio ssh", "es"),  # Spanish verb and article
        ("restart the ssh service", "en"),  # English article
        ("la red no funciona", "es"),  # "no" is shared; "la" is not
        ("where are the logs", "en"),  # no content word at all
        ("instalar paquetes", "es"),  # no function word: the es/en model decides
        ("error al montar disco", "es"),  # "error" is both
    ],
)
def test_detect_query_language_short_queries(query: str, expected: str) -> None:
    assert detect_query_language(query, default="en" if expected == "es" else "es") == expected
    assert detect_language(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "Kubernetes",  # a product name has no language
        "Bonjour tout le monde",  # another language: neither es nor en
        "1234",  # no letters
        "",  # empty
    ],
)
@pytest.mark.parametrize("default", ["es", "en"])
def test_detect_query_language_falls_back_to_default(query: str, default: str) -> None:
    assert detect_query_language(query, default=default) == default  # type: ignore[arg-type]


def test_guess_language_confidence_for_single_word() -> None:
    assert guess_language("Kubernetes").confident is False
    assert guess_language(EN_TEXT).confident is True


def test_detect_language_is_deterministic() -> None:
    texts = [ES_TEXT, EN_TEXT, "configurar red wifi", "Kubernetes", "hola"]
    first = [guess_language(t) for t in texts]
    assert all([guess_language(t) for t in texts] == first for _ in range(5))

"""Tests of the BM25-style sparse encoder."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from core.models import Language
from core.sparse import encode_document, encode_query, term_index, terms

ROOT = Path(__file__).resolve().parents[2]


def _weights(text: str, language: Language) -> dict[int, float]:
    vector = encode_document(text, language)
    return dict(zip(vector.indices, vector.values, strict=True))


@pytest.mark.parametrize(
    ("query", "document", "language"),
    [
        ("configuracion", "La configuración de la red", "es"),  # accents folded away
        ("CONFIGURACIÓN", "configuracion", "es"),  # case and accents both folded
        ("paquetes", "instalar el paquete", "es"),  # Spanish plural stems to the singular
        ("installing packages", "the package was installed", "en"),  # English inflections stem
        ("naïve café", "naive cafe", "en"),  # accents folded in English too
    ],
)
def test_encode_query_matches_document_forms(query: str, document: str, language: Language) -> None:
    query_indices = set(encode_query(query, language).indices)
    assert query_indices
    assert query_indices <= set(encode_document(document, language).indices)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("the of and to is it", "en"),  # English function words only
        ("de la que el en y los", "es"),  # Spanish function words only
        ("está también más", "es"),  # accented Spanish stopwords, folded before lookup
        ("¿?¡! -- ...", "es"),  # punctuation only
        ("", "other"),  # nothing
    ],
)
def test_encode_query_stopwords_only_empty(text: str, language: Language) -> None:
    assert encode_query(text, language).indices == []
    assert encode_document(text, language).indices == []


def test_encode_query_unit_weights_unique_sorted() -> None:
    vector = encode_query("red red redes configuración de red", "es")
    assert vector.values == [1.0] * len(vector.indices)
    assert vector.indices == sorted(set(vector.indices))
    assert len(vector.indices) == 2  # "red"/"redes" share a stem; "configur"


def test_encode_query_other_language_reaches_stemmed_documents() -> None:
    query = set(encode_query("paquetes instalados", "other").indices)
    assert query & set(encode_document("paquete instalado", "es").indices)
    assert query & set(encode_document("installed packages", "en").indices)
    assert query & set(encode_document("paquetes instalados", "other").indices)


def test_encode_document_saturates_term_frequency() -> None:
    once = _weights("firewall rules", "en")[term_index("firewal")]
    twice = _weights("firewall firewall", "en")[term_index("firewal")]
    assert once < twice < 2 * once


def test_encode_document_longer_chunk_lower_weight() -> None:
    short = _weights("firewall rules", "en")[term_index("firewal")]
    filler = " ".join(f"word{i}" for i in range(200))
    long = _weights(f"firewall rules {filler}", "en")[term_index("firewal")]
    assert long < short


def test_terms_stem_per_language() -> None:
    assert terms("Configuración de la red", "es") == ["configur", "red"]
    assert terms("Installing the packages", "en") == ["instal", "packag"]
    assert terms("Installing the packages", "other") == ["installing", "packages"]


def test_term_index_is_crc32() -> None:
    # Stored vectors depend on this mapping: changing it silently breaks existing collections.
    assert term_index("configur") == zlib.crc32(b"configur") == 2244038773


def test_encode_document_same_in_other_process() -> None:
    text = "Configuración de paquetes y redes: instalación rápida"
    code = (
        "from core.sparse import encode_document; "
        f"print(encode_document({text!r}, 'es').model_dump_json())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == encode_document(text, "es").model_dump_json()

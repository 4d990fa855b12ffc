"""Tests of token counting with the embedding model's tokenizer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.embedder import default_model_path
from core.settings import Settings
from core.tokens import TokenCounter, get_token_counter, read_max_seq_length

LONG_SPANISH = (
    "El administrador debe revisar los registros del sistema todas las mañanas, "
    "comprobar que las copias de seguridad terminaron sin errores y anotar cualquier "
    "incidencia en el cuaderno de guardia antes de las nueve. "
) * 12


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    """Counter of the bundled model."""
    return TokenCounter.from_model_dir(default_model_path())


def test_counter_limits_bundled_model(counter: TokenCounter) -> None:
    assert counter.special_tokens == 2
    assert counter.max_tokens == 254
    assert read_max_seq_length(default_model_path()) == 256


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),  # nothing at all: no special tokens either
        ("hello world", 2),  # two whole-word vocabulary entries
        ("Hello, World!", 4),  # lowercased; punctuation splits off
        ("  \n\n  ", 0),  # whitespace alone
    ],
)
def test_count_known_texts(counter: TokenCounter, text: str, expected: int) -> None:
    assert counter.count(text) == expected


def test_count_long_text_not_truncated(counter: TokenCounter) -> None:
    # tokenizer.json ships with truncation at 128; the counter must switch it off.
    sentence = LONG_SPANISH[: len(LONG_SPANISH) // 12]
    assert counter.count(LONG_SPANISH) == 12 * counter.count(sentence)
    assert counter.count(LONG_SPANISH) > 256


def test_count_many_matches_count(counter: TokenCounter) -> None:
    texts = ["¿Dónde está el fichero /etc/fstab?", "", LONG_SPANISH, "¡Hola!"]
    assert counter.count_many(texts) == [counter.count(text) for text in texts]


@pytest.mark.parametrize(
    "text",
    [
        "Instale el paquete con «apt-get install ssh» y reinicie.",  # Spanish quotes, hyphens
        "Ñandú, pingüino y acción: ¿caracteres acentuados?",  # accents stripped by the model
        LONG_SPANISH,  # longer than the model's input
        "The kernel (vmlinuz-6.1.0-18-amd64) boots in 3.2 s.",  # version strings and numbers
    ],
)
def test_count_matches_sentence_transformers_tokenizer(counter: TokenCounter, text: str) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)
    assert counter.count(text) == len(reference(text, add_special_tokens=False)["input_ids"])


def test_token_spans_point_into_text(counter: TokenCounter) -> None:
    text = "Configuración de red: ¿DHCP o estática?"
    spans = counter.token_spans(text)
    assert len(spans) == counter.count(text)
    # Word pieces of a whitespace-split tokenizer tile every non-space character.
    assert "".join(text[start:end] for start, end in spans) == "".join(text.split())


def test_get_token_counter_cached() -> None:
    assert get_token_counter(Settings()) is get_token_counter(Settings())


def test_get_token_counter_remote_uses_bundled_tokenizer() -> None:
    settings = Settings(embedding_url="http://127.0.0.1:9/v1", embedding_model="/nonexistent")
    counter = get_token_counter(settings)
    assert counter.tokenizer_file == default_model_path() / "tokenizer.json"


def test_get_token_counter_local_model_dir(tmp_path: Path) -> None:
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    shutil.copy(default_model_path() / "tokenizer.json", model_dir)
    (model_dir / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    counter = get_token_counter(Settings(embedding_model=str(model_dir)))
    assert counter.tokenizer_file == model_dir / "tokenizer.json"
    assert counter.max_tokens == 126


def test_get_token_counter_missing_tokenizer_falls_back(tmp_path: Path) -> None:
    counter = get_token_counter(Settings(embedding_model=str(tmp_path)))
    assert counter.tokenizer_file == default_model_path() / "tokenizer.json"


def test_import_tokens_without_torch() -> None:
    code = (
        "import sys, core.tokens; "
        "core.tokens.get_token_counter().count('hola'); "
        "sys.exit('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()

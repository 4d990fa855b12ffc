"""Token counting with the embedding model's own fast tokenizer, without importing torch."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from core.embedder import default_model_path, resolve_local_model_dir
from core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

_DEFAULT_MAX_SEQ_LENGTH = 512
# Pre-tokenizers that always split at whitespace: a text's count is then the sum of the counts
# of its whitespace-separated parts (no token spans a space).
_WHITESPACE_SPLITTING = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})


class TokenCounter:
    """Counts model tokens of text the way the embedding model's tokenizer splits it."""

    def __init__(self, tokenizer_file: Path, max_seq_length: int = _DEFAULT_MAX_SEQ_LENGTH) -> None:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json files often ship with truncation and padding on (128 for MiniLM),
        # which would cap every count.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.tokenizer_file = tokenizer_file
        self.special_tokens = len(tokenizer.encode("", add_special_tokens=True).ids)
        self.max_tokens = max_seq_length - self.special_tokens
        pre_tokenizer = json.loads(tokenizer.to_str()).get("pre_tokenizer") or {}
        self.splits_at_whitespace = pre_tokenizer.get("type") in _WHITESPACE_SPLITTING

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> TokenCounter:
        """A counter for the sentence-transformers model in `model_dir`."""
        return cls(model_dir / "tokenizer.json", read_max_seq_length(model_dir))

    def count(self, text: str) -> int:
        """Number of tokens in `text`, special tokens excluded."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        """Token counts of several texts, special tokens excluded."""
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span in `text` of every token, special tokens excluded."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


def read_max_seq_length(model_dir: Path) -> int:
    """The model's input limit in tokens (special tokens included), from its config files."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
        ("config.json", "max_position_embeddings"),
    ):
        path = model_dir / name
        if not path.is_file():
            continue
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
        # Some tokenizer configs say 1e30 for "no limit".
        if isinstance(value, int) and 0 < value <= 1_000_000:
            return value
    return _DEFAULT_MAX_SEQ_LENGTH


def tokenizer_model_dir(embedding_model: str | None, embedding_url: str | None) -> Path:
    """Model directory whose tokenizer approximates the configured embedder."""
    if embedding_url is None and embedding_model is not None:
        model_dir = resolve_local_model_dir(embedding_model)
        if model_dir is not None and (model_dir / "tokenizer.json").is_file():
            return model_dir
        logger.warning(
            "No tokenizer.json for embedding model %r; counting tokens with the bundled model",
            embedding_model,
        )
    return default_model_path()


@lru_cache(maxsize=4)
def _cached_counter(model_dir: Path) -> TokenCounter:
    return TokenCounter.from_model_dir(model_dir)


def get_token_counter(settings: Settings | None = None) -> TokenCounter:
    """The process-wide token counter of the configured embedding model."""
    settings = settings or get_settings()
    return _cached_counter(tokenizer_model_dir(settings.embedding_model, settings.embedding_url))

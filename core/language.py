"""Spanish / English / other language detection for documents and short queries."""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Literal, NamedTuple

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from core.models import Language

QueryLanguage = Literal["es", "en"]

# Below this many characters py3langid's full model is unreliable (measured: ~100 chars of
# prose already gives p > 0.85), so short texts go through stopwords and an es/en-only model.
_SHORT_CHARS = 100
_SAMPLE_WINDOW = 5_000
_SAMPLE_WINDOWS = 4
_OTHER_SHORT_MIN_P = 0.6
_OTHER_LONG_MIN_P = 0.5
_CONFIDENT_PAIR_P = 0.9

# Function words that exist in only one of the two languages ("a", "no", "me", "son" are
# left out on purpose: they are words in both).
_ES_FUNCTION_WORDS = """
    de la el los las del en y que se por para con una un es como más pero su sus al lo le les
    ya este esta estos estas ese esa eso esto hay muy sin sobre también hasta donde desde cuando
    qué cómo dónde cuál cuáles cuándo quién porque mi mis tu tus yo nos mí está están estoy
    puedo puede pueden entre otro otra otros todo todos toda cada ni o u tiene tengo hace hacer
    ser
"""
_EN_FUNCTION_WORDS = """
    the of and to in is are was were be been being for on with as at by from that this these
    those it its an or but not what how why when where which who whom do does did have has had
    can could should would will shall i you your we our they their there here if then than
    about into over under after before up out all any some my he she his her them us
"""
_ES_WORDS = frozenset(_ES_FUNCTION_WORDS.split())
_EN_WORDS = frozenset(_EN_FUNCTION_WORDS.split())
_ES_MARKS = frozenset("¿¡ñÑ")
_ES_ACCENTS = frozenset("áéíóúüÁÉÍÓÚÜ")
_WORD = re.compile(r"[^\W\d_]+")

_identifiers: dict[str, LanguageIdentifier] = {}
_identifiers_lock = threading.Lock()


class LanguageGuess(NamedTuple):
    """A detected language and whether the evidence for it was clear."""

    language: Language
    confident: bool


def detect_language(text: str) -> Language:
    """Return "es", "en" or "other" for a document or a short text."""
    return guess_language(text).language


def detect_query_language(query: str, default: QueryLanguage = "en") -> QueryLanguage:
    """Return the language of a search query, or `default` when the query gives no clear sign."""
    guess = guess_language(query)
    if guess.language == "other" or not guess.confident:
        return default
    return guess.language


def guess_language(text: str) -> LanguageGuess:
    """Return the detected language of `text` together with how clear the evidence was."""
    sample = _sample(unicodedata.normalize("NFC", text))
    letters = [ch for ch in sample if ch.isalpha()]
    if not letters:
        return LanguageGuess("other", confident=True)
    latin = sum(1 for ch in letters if ch.isascii() or "LATIN" in unicodedata.name(ch, ""))
    if latin < len(letters) / 2:
        return LanguageGuess("other", confident=True)

    ranked = _identifier("all").rank(sample)
    top, top_p = ranked[0]
    if top in ("es", "en") and top_p >= 0.5:
        return LanguageGuess(top, confident=True)
    short = len(sample.strip()) < _SHORT_CHARS
    if top not in ("es", "en") and top_p >= (_OTHER_SHORT_MIN_P if short else _OTHER_LONG_MIN_P):
        return LanguageGuess("other", confident=True)

    es_score, en_score = _cue_scores(sample)
    if es_score != en_score:
        return LanguageGuess("es" if es_score > en_score else "en", confident=True)
    pair, pair_p = _identifier("es-en").classify(sample)
    return LanguageGuess(pair, confident=pair_p >= _CONFIDENT_PAIR_P)


def _cue_scores(text: str) -> tuple[int, int]:
    """Return (Spanish, English) evidence from function words and Spanish-only characters."""
    words = _WORD.findall(text.lower())
    es = sum(1 for w in words if w in _ES_WORDS)
    en = sum(1 for w in words if w in _EN_WORDS)
    if any(ch in _ES_MARKS for ch in text):
        es += 2
    if any(ch in _ES_ACCENTS for ch in text):
        es += 1
    return es, en


def _sample(text: str) -> str:
    """Return `text`, or evenly spread windows of it when it is long (bounded, deterministic)."""
    if len(text) <= _SAMPLE_WINDOW * _SAMPLE_WINDOWS:
        return text
    step = (len(text) - _SAMPLE_WINDOW) // (_SAMPLE_WINDOWS - 1)
    return "\n".join(text[i * step : i * step + _SAMPLE_WINDOW] for i in range(_SAMPLE_WINDOWS))


def _identifier(kind: Literal["all", "es-en"]) -> LanguageIdentifier:
    """Return the process-wide py3langid model, all languages or restricted to es/en."""
    with _identifiers_lock:
        if kind not in _identifiers:
            model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            if kind == "es-en":
                model.set_languages(["es", "en"])
            _identifiers[kind] = model
        return _identifiers[kind]

"""Offline Spanish and English word lists: which words are known, and what a misspelling meant."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from core.audit_models import AuditLanguage

logger = logging.getLogger(__name__)


def _words(text: str) -> tuple[str, ...]:
    """The words of a space-separated list."""
    return tuple(text.split())


# Characters stripped from both ends of a word as printed ("(paquete)," → "paquete").
_EDGE_PUNCTUATION = "\"'([{<«“\u2018¿¡)]}>»”\u2019.,;:!?…*"
# A checkable word: letters, optionally joined by one apostrophe or hyphen ("don't", "e-mail").
_CHECKABLE = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
# Anything in a word that marks code, paths, URLs, versions or identifiers.
_CODE_MARKS = re.compile(r"[\d_/\\@#$%^&*=+<>|~`{}\[\]]|\w\.\w|://")
# Enclitic pronouns a Spanish infinitive, gerund or imperative may carry ("instálelo").
_ES_CLITICS = re.compile(r"(?:(?:me|te|se|nos|os)(?:lo|la|los|las|le|les)?|lo|la|los|las|le|les)$")
_SPANISH_ACCENTS = str.maketrans("áéíóú", "aeiou")
_MIN_LENGTH = 3
# Parts of prefixed and compound words must be this long and this frequent (pyspellchecker's
# counts: 50 is its floor) so that a typo does not split into two rare words ("call+led").
_MIN_PART = 4
_MIN_PART_FREQUENCY = 100
# Prefixes that make new words of known ones ("autoinstalado", "superuser", "untrusted").
_PREFIXES: dict[str, tuple[str, ...]] = {
    "es": _words(
        "auto super sub sobre meta pre multi inter micro mini semi anti contra hiper "
        "infra intra macro mono post pseudo seudo tele trans ultra extra"
    ),
    "en": _words(
        "auto super sub meta pre un non multi inter micro mini semi anti counter hyper "
        "infra intra macro mono post pseudo tele trans ultra extra over under"
    ),
}


class _Forms(Protocol):
    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Lexicon:
    """The words of one language: pyspellchecker's frequency list plus simplemma's word forms."""

    language: AuditLanguage
    frequencies: Mapping[str, int]
    lemmas: _Forms
    letters: str

    def has(self, word: str) -> bool:
        """Whether `word` is in either list exactly as written."""
        return word in self.frequencies or self.lemmas.get(word) is not None

    def knows(self, word: str) -> bool:
        """Whether `word` is a word of the language, in any case form."""
        if any(self.has(form) for form in _case_forms(word)):
            return True
        lower = word.lower()
        if self._knows_derived(lower):
            return True
        if self.language == "es":
            return self._knows_with_clitics(lower)
        return self._knows_english_affix(lower)

    def is_verb_form(self, word: str) -> bool:
        """Whether `word` is an inflected form of a Spanish or English verb (not a lemma itself)."""
        lemma = self.lemmas.get(word.lower())
        if lemma is None or lemma == word.lower():
            return False
        return self.language != "es" or lemma.endswith(("ar", "er", "ir", "ír"))

    def frequency(self, word: str) -> float:
        """How often the word list saw `word`, or half its lemma's count for other forms."""
        count = self.frequencies.get(word)
        if count is not None:
            return count
        lemma = self.lemmas.get(word)
        return self.frequencies.get(lemma, 0) / 2 if lemma is not None else 0

    def suggest(self, word: str) -> str | None:
        """Return the most likely intended word, in the case form of `word`, or None."""
        lower = word.lower()
        candidates = self._known(_edits(lower, self.letters) | _accented(lower))
        if not candidates:
            return None
        best = max(
            sorted(candidates),
            key=lambda c: (strip_accents(c) == strip_accents(lower), self.frequency(c)),
        )
        return _same_case(best, word)

    def _known(self, words: set[str]) -> set[str]:
        return {w for w in words if self.has(w)}

    def _knows_derived(self, word: str) -> bool:
        """Prefixed words, Spanish adverbs in -mente and English compounds of common words."""
        for prefix in _PREFIXES[self.language]:
            if word.startswith(prefix) and self._common(word[len(prefix) :].lstrip("-")):
                return True
        if self.language == "es" and word.endswith("mente"):
            stem = word[: -len("mente")]
            return self.has(stem)
        if self.language == "en":
            return any(
                self._common(word[:i]) and self._common(word[i:])
                for i in range(_MIN_PART, len(word) - _MIN_PART + 1)
            )
        return False

    def _common(self, word: str) -> bool:
        """Whether `word` is long and frequent enough to be trusted as part of a longer word."""
        return len(word) >= _MIN_PART and self.frequencies.get(word, 0) >= _MIN_PART_FREQUENCY

    def _knows_with_clitics(self, word: str) -> bool:
        match = _ES_CLITICS.search(word)
        if match is None or match.start() < _MIN_LENGTH:
            return False
        stem = word[: match.start()]
        for candidate in {stem, stem.translate(_SPANISH_ACCENTS)}:
            if candidate.endswith(("ar", "er", "ir", "ír", "ando", "iendo", "yendo")) and self.has(
                candidate
            ):
                return True
            if self.is_verb_form(candidate):
                return True
        return False

    def _knows_english_affix(self, word: str) -> bool:
        for suffix in ("'s", "\u2019s", "s'"):
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                stem = word[: -len(suffix)] + ("s" if suffix == "s'" else "")
                return self.has(stem)
        return False


def checkable_word(token: str) -> str | None:
    """Return the word to spell-check inside a printed token, or None for code-like tokens."""
    # Ligatures ("ﬁ"), decomposed accents and soft hyphens as PDFs often carry them.
    token = unicodedata.normalize("NFKC", token).replace("\u00ad", "")
    if _CODE_MARKS.search(token):
        return None
    core = token.strip(_EDGE_PUNCTUATION)
    if len(core) < _MIN_LENGTH or not _CHECKABLE.fullmatch(core):
        return None
    return core


def looks_like_name(word: str) -> bool:
    """Whether the word's case marks an acronym or a name (ACPI, GnuPG, iPhone), not prose."""
    return any(ch.isupper() for ch in word[1:])


_lexicons: dict[str, Lexicon] = {}
_lexicons_lock = threading.Lock()


def lexicon(language: AuditLanguage) -> Lexicon:
    """Return the process-wide word list of a language, loading it on first use."""
    with _lexicons_lock:
        if language not in _lexicons:
            _lexicons[language] = _load(language)
        return _lexicons[language]


def _load(language: AuditLanguage) -> Lexicon:
    from spellchecker import SpellChecker

    checker = SpellChecker(language=language, distance=1)
    frequencies = dict(checker.word_frequency.dictionary)
    letters = "".join(sorted(set(checker.word_frequency.letters) - {"'"}))
    return Lexicon(language, frequencies, _word_forms(language), letters)


def _word_forms(language: AuditLanguage) -> _Forms:
    """simplemma's inflected forms (word → lemma); pyspellchecker's Spanish list lacks most."""
    try:
        from simplemma.strategies.dictionaries.dictionary_factory import DefaultDictionaryFactory
    except ImportError:  # still works, with many more false alarms on Spanish plurals and verbs
        logger.warning("simplemma is not installed: spelling uses pyspellchecker's lists only")
        return {}
    return DefaultDictionaryFactory().get_dictionary(language)


def _case_forms(word: str) -> tuple[str, ...]:
    lower = word.lower()
    return (word, lower, lower.capitalize()) if word != lower else (word,)


def _edits(word: str, letters: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    transposes = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in letters}
    inserts = {a + c + b for a, b in splits for c in letters}
    return deletes | transposes | replaces | inserts


def _accented(word: str) -> set[str]:
    """The word with its accents moved, added or removed, one vowel at a time."""
    plain = {"a": "aá", "e": "eé", "i": "ií", "o": "oó", "u": "uúü"}
    bare = strip_accents(word)
    return {
        bare[:i] + accented + bare[i + 1 :]
        for i, vowel in enumerate(bare)
        for accented in plain.get(vowel, "")
    }


def strip_accents(word: str) -> str:
    """The word without acute accents and diaereses (ñ keeps its tilde)."""
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn" or ch == "\u0303")


def _same_case(word: str, model: str) -> str:
    if model.isupper() and len(model) > 1:
        return word.upper()
    if model[:1].isupper():
        return word[:1].upper() + word[1:]
    return word

"""The grammar auditor: spelling, repeated words, spacing, ¿…? ¡…! pairing and Spanish accents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from core.audit_models import (
    AuditLanguage,
    Auditor,
    Box,
    Finding,
    Paragraph,
    Severity,
    SpellingRule,
)
from core.language import guess_language
from tasks.audit import punctuation
from tasks.audit.accents import accent_issues
from tasks.audit.punctuation import Issue, starts_sentence
from tasks.audit.spelling import Lexicon, checkable_word, lexicon, looks_like_name, strip_accents

_VOWELS = frozenset("aeiouyáéíóúü")
# An unknown word made of a known word of this length and a letter in front is a Unix-style name.
_MIN_NAME_STEM = 4
# Two consonants that can open an English or Spanish word.
_ONSETS = frozenset(
    {"bl", "br", "ch", "cl", "cr", "dr", "dw", "fl", "fr", "gh", "gl", "gn", "gr", "kl", "kn"}
    | {"kr", "ll", "ph", "pl", "pn", "pr", "ps", "rh", "sc", "sh", "sk", "sl", "sm", "sn", "sp"}
    | {"st", "sv", "sw", "sy", "th", "tr", "ts", "tw", "wh", "wr"}
)
# Words this short are flagged only for a swap of letters or a missing accent ("teh", "lso").
_SHORT_WORD = 3
# A word used this often in one document is taken as a term of the document, not a typo.
_TERM_MIN_COUNT = 3


@dataclass(frozen=True)
class _Text:
    """A paragraph's tokens with their boxes and the language it is written in."""

    paragraph: Paragraph
    tokens: list[str]
    boxes: list[Box]
    language: AuditLanguage
    measured: bool
    """Whether the boxes are the words' own (so gaps between them can be measured)."""

    def box(self, first: int, last: int | None = None) -> Box:
        """The box around tokens first..last (inclusive)."""
        chosen = self.boxes[first : (first if last is None else last) + 1]
        return Box(
            x0=min(b.x0 for b in chosen),
            y0=min(b.y0 for b in chosen),
            x1=max(b.x1 for b in chosen),
            y1=max(b.y1 for b in chosen),
        )

    def starts_sentence(self, index: int) -> bool:
        """Whether the token at `index` opens a sentence, a quotation or a list item."""
        return starts_sentence(self.tokens, index)


@dataclass(frozen=True)
class _Document:
    """What the whole document tells about words: its terms and the names it uses."""

    glossary: frozenset[str]
    counts: Counter[str]
    names: frozenset[str]

    def accepts(self, word: str) -> bool:
        """Whether the glossary or the document's own usage vouches for `word`."""
        folded = word.casefold()
        return folded in self.glossary or self.counts[folded] >= _TERM_MIN_COUNT


def audit_grammar(paragraphs: Sequence[Paragraph], rule: SpellingRule) -> list[Finding]:
    """Return the grammar findings of a document's paragraphs under a spelling policy."""
    texts = [t for t in map(_read, paragraphs) if t is not None and t.language in rule.languages]
    document = _document(texts, rule.glossary)
    findings: list[Finding] = []
    for text in texts:
        findings.extend(_spelling(text, document, rule))
        if punctuation.reads_as_code(text.tokens):
            continue
        issues = [
            *punctuation.repeated_words(text.tokens),
            *punctuation.spacing(
                text.paragraph.text,
                text.tokens,
                text.boxes if text.measured else None,
                lexicon(text.language).knows,
            ),
        ]
        if text.language == "es":
            issues += [
                *punctuation.pairing(text.tokens),
                *accent_issues(text.tokens, lexicon("es")),
            ]
        findings.extend(_findings(text, rule.severity, issues))
    return findings


def _read(paragraph: Paragraph) -> _Text | None:
    """The paragraph's tokens and boxes and its language, or None when it is neither es nor en."""
    tokens = [w.text for w in paragraph.words]
    if " ".join(tokens) != paragraph.text:
        tokens = paragraph.text.split(" ")
    measured = len(tokens) == len(paragraph.words)
    if measured:
        boxes = [w.box for w in paragraph.words]
    else:
        boxes = [paragraph.box if paragraph.words else Box(x0=0, y0=0, x1=0, y1=0)] * len(tokens)
    language = guess_language(paragraph.text).language
    if language == "other":
        return None
    return _Text(paragraph, tokens, boxes, language, measured)


def _document(texts: Sequence[_Text], glossary: Sequence[str]) -> _Document:
    """Word counts and mid-sentence capitalised words over the document, and the glossary."""
    counts: Counter[str] = Counter()
    names: set[str] = set()
    for text in texts:
        for index, token in enumerate(text.tokens):
            word = checkable_word(token)
            if word is None:
                continue
            counts[word.casefold()] += 1
            if word[:1].isupper() and not text.starts_sentence(index):
                names.add(word)
    terms = {part.casefold() for entry in glossary for part in entry.split()}
    terms |= {checkable_word(part) or part for part in terms}
    return _Document(frozenset(t.casefold() for t in terms), counts, frozenset(names))


def _spelling(text: _Text, document: _Document, rule: SpellingRule) -> Iterator[Finding]:
    own = lexicon(text.language)
    others = [lexicon(lang) for lang in rule.languages if lang != text.language]
    for index, token in enumerate(text.tokens):
        word = checkable_word(token)
        if word is None or looks_like_name(word) or document.accepts(word):
            continue
        if text.language == "es" and ("'" in word or "\u2019" in word):
            continue
        capitalised = word[:1].isupper()
        if capitalised and (not text.starts_sentence(index) or word in document.names):
            continue
        for part in word.split("-"):
            if len(part) < 3 or own.knows(part) or document.accepts(part):
                continue
            if any(other.knows(part) for other in others) or _looks_like_code(part, own, others):
                continue
            suggestion = own.suggest(part)
            if suggestion is None or not _worth_flagging(part, suggestion, capitalised):
                continue
            yield from _findings(
                text,
                rule.severity,
                [
                    Issue(
                        "grammar.spelling",
                        index,
                        index,
                        f"Posible error ortográfico: «{part}»; ¿quiso decir «{suggestion}»?",
                        f"Possible misspelling: '{part}'; did you mean '{suggestion}'?",
                        actual=part,
                        expected=suggestion,
                        suggestion=suggestion,
                    )
                ],
            )


def _looks_like_code(word: str, own: Lexicon, others: Sequence[Lexicon]) -> bool:
    """Whether an unknown word reads as a Unix-style name ("sshd", "dselect", "cgroups")."""
    lower = word.lower()
    if not any(ch in _VOWELS for ch in lower):
        return True
    # One letter glued to a known word, where no English or Spanish word could start that way.
    stem = lower[1:]
    return (
        lower[1] not in _VOWELS
        and lower[:2] not in _ONSETS
        and len(stem) >= _MIN_NAME_STEM
        and any(words.knows(stem) for words in (own, *others))
    )


def _worth_flagging(word: str, suggestion: str, capitalised: bool) -> bool:
    """Whether the evidence for a misspelling is strong enough for a word of this shape."""
    accent_only = strip_accents(word.lower()) == strip_accents(suggestion.lower())
    if capitalised:
        return accent_only
    if len(word) <= _SHORT_WORD:
        return accent_only or _is_transposition(word.lower(), suggestion.lower())
    return True


def _is_transposition(a: str, b: str) -> bool:
    diffs = [i for i in range(len(a)) if len(a) == len(b) and a[i] != b[i]]
    return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]]


def _findings(text: _Text, severity: Severity, issues: Iterable[Issue]) -> Iterator[Finding]:
    """The issues of a paragraph as located findings in the paragraph's language."""
    for issue in issues:
        yield Finding(
            auditor=Auditor.GRAMMAR,
            rule=issue.rule,
            severity=severity,
            page=text.paragraph.page,
            box=text.box(issue.first, issue.last),
            message=issue.message_es if text.language == "es" else issue.message_en,
            message_en=issue.message_en,
            expected=issue.expected,
            actual=issue.actual,
            suggestion=issue.suggestion,
        )

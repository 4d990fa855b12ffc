"""Rules over a paragraph's printed words: repeated words, spacing and Spanish ¿…? ¡…! pairing."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from core.audit_models import Box
from tasks.audit.spelling import checkable_word

OPENING = "\"'([{«“\u2018¿¡"
CLOSING = "\"')]}»”\u2019"
SENTENCE_END = ".!?:;…"
_BULLETS = "-•\u2013\u2014"
_PUNCTUATION_ONLY = re.compile(r"[,;:!?]+|\.")
_JOINED = re.compile(r"^([^\W\d_]{2,})([,;:.!?])([^\W\d_]+)[,;:.!?)»”\"']*$")
_CODE_MARKS = re.compile(r"[\d_/\\@#$%^&*=+<>|~`{}\[\]]|://")
_DOUBLE_SPACE = re.compile(r"\S( {2,})\S")
_MARKS = {"?": "¿", "!": "¡"}
_ONE_LETTER_WORDS = frozenset({"I", "a", "y", "o", "e", "u"})
# Legitimate doubled words ("that that", "had had").
_DOUBLES_ALLOWED = frozenset({"that", "had", "is", "bye", "no", "very", "ha", "je"})
# Word gaps on one line (in multiples of the line's usual gap) read as a double space; wider
# ones are tab stops or columns. The extra width must also be a fair share of the type height.
_WIDE_GAP = (1.7, 3.5)
_WIDE_GAP_MIN_HEIGHTS = 0.15
_MIN_GAPS_PER_LINE = 5
# A paragraph with this share of code-like tokens, or this many lone dots, is not prose.
_CODE_SHARE = 0.25
_LEADER_DOTS = 3


@dataclass(frozen=True)
class Issue:
    """A problem with words first..last of a paragraph, told in Spanish and in English."""

    rule: str
    first: int
    last: int
    message_es: str
    message_en: str
    actual: str
    expected: str | None
    suggestion: str | None


def starts_sentence(tokens: Sequence[str], index: int) -> bool:
    """Whether the token at `index` opens a sentence, a quotation or a list item."""
    if index == 0 or tokens[index][:1] in OPENING + _BULLETS:
        return True
    previous = tokens[index - 1].rstrip(CLOSING)
    return not previous or previous[-1] in SENTENCE_END or previous in _BULLETS


def repeated_words(tokens: Sequence[str]) -> Iterator[Issue]:
    """A word written twice in a row ("the the", "de de")."""
    for index in range(1, len(tokens)):
        first, second = tokens[index - 1], tokens[index]
        if first[-1:] in SENTENCE_END + ",)]}»”\"'" or second[:1] in OPENING:
            continue
        word = checkable_word(second) or (second if second.isalpha() else None)
        if word is None or word.casefold() != first.strip(OPENING).casefold():
            continue
        names = (
            first[:1].isupper() and word[:1].isupper() and not starts_sentence(tokens, index - 1)
        )
        # "value Value", "ACAP ACAP", "dNSName dNSName": table cells, acronyms and identifiers.
        case_change = second[:1].isupper() and not first[:1].isupper()
        if word.casefold() in _DOUBLES_ALLOWED or names or case_change or _is_identifier(word):
            continue
        yield Issue(
            "grammar.repeated_word",
            index - 1,
            index,
            f"Palabra repetida: «{word} {word}»",
            f"Repeated word: '{word} {word}'",
            actual=f"{first} {second}",
            expected=first,
            suggestion=first,
        )


def spacing(
    text: str, tokens: Sequence[str], boxes: Sequence[Box] | None, knows: Callable[[str], bool]
) -> Iterator[Issue]:
    """Double spaces (in the text or between word boxes), spaces before and missing after marks."""
    for match in _DOUBLE_SPACE.finditer(text):
        yield _double_space(tokens, text.count(" ", 0, match.start(1)))
    for index in _wide_gaps(tokens, boxes) if boxes is not None else ():
        yield _double_space(tokens, index)
    for index in range(1, len(tokens)):
        token, previous = tokens[index], tokens[index - 1]
        if _PUNCTUATION_ONLY.fullmatch(token) and _space_before(tokens, index):
            yield Issue(
                "grammar.spacing",
                index - 1,
                index,
                f"Espacio antes de «{token}»",
                f"Space before '{token}'",
                actual=f"{previous} {token}",
                expected=previous + token,
                suggestion=previous + token,
            )
    for index, token in enumerate(tokens):
        fixed = _missing_space(token, knows)
        if fixed is not None:
            yield Issue(
                "grammar.spacing",
                index,
                index,
                f"Falta un espacio tras la puntuación en «{token}»",
                f"Missing space after punctuation in '{token}'",
                actual=token,
                expected=fixed,
                suggestion=fixed,
            )


def reads_as_code(tokens: Sequence[str]) -> bool:
    """Whether a paragraph is code, a listing or a table of contents rather than prose."""
    marked = sum(1 for token in tokens if _CODE_MARKS.search(token) or token.isdigit())
    leaders = sum(1 for token in tokens if token in {".", "…"})
    return marked >= _CODE_SHARE * len(tokens) or leaders >= _LEADER_DOTS


def pairing(tokens: Sequence[str]) -> Iterator[Issue]:
    """Spanish closing ? and ! without their opening ¿ and ¡, and openings never closed."""
    pending: dict[str, list[int]] = {"¿": [], "¡": []}
    for index, token in enumerate(tokens):
        if _stands_for_itself(tokens, index):
            continue
        if _CODE_MARKS.search(token):
            # Only the marks after a path or a command can be punctuation ("«~/.bashrc»?").
            token = token[len(token.rstrip("?!")) :]
        for position, char in enumerate(token):
            if char in _MARKS and token[position + 1 : position + 2].isalpha():
                continue  # "?broken", "!Package": a search term or a negation, not a question
            if char in pending:
                pending[char].append(index)
            elif char in _MARKS and pending[_MARKS[char]]:
                pending[_MARKS[char]].pop()
            elif char in _MARKS:
                yield _unopened(tokens, index, char, _MARKS[char])
    for closer, opener in _MARKS.items():
        for index in pending[opener]:
            yield Issue(
                "grammar.punctuation_pairing",
                index,
                index,
                f"«{opener}» sin su «{closer}» de cierre",
                f"'{opener}' without its closing '{closer}'",
                actual=tokens[index],
                expected=f"{opener}…{closer}",
                suggestion=None,
            )


def _unopened(tokens: Sequence[str], index: int, closer: str, opener: str) -> Issue:
    start = index
    while start > 0 and not starts_sentence(tokens, start):
        start -= 1
    actual = " ".join(tokens[start : index + 1])
    lead = len(actual) - len(actual.lstrip(OPENING))
    expected = actual[:lead] + opener + actual[lead:]
    return Issue(
        "grammar.punctuation_pairing",
        index,
        index,
        f"«{closer}» sin su «{opener}» de apertura",
        f"'{closer}' without its opening '{opener}'",
        actual=actual,
        expected=expected,
        suggestion=expected,
    )


def _space_before(tokens: Sequence[str], index: int) -> bool:
    """Whether the lone mark at `index` is punctuation set off from the prose word before it."""
    previous = tokens[index - 1]
    if (
        not previous[-1:].isalpha()
        or _CODE_MARKS.search(previous)
        or _stands_for_itself(tokens, index)
    ):
        return False
    following = tokens[index + 1] if index + 1 < len(tokens) else ""
    # A mark followed by another lone mark or a number is a leader or a list ("Index . . . 3").
    return not (_PUNCTUATION_ONLY.fullmatch(following) or following[:1].isdigit())


def _is_identifier(word: str) -> bool:
    return word.isupper() or any(ch.isupper() for ch in word[1:])


def _stands_for_itself(tokens: Sequence[str], index: int) -> bool:
    """Whether a lone . ? or ! inside a sentence names a key or a path ("Pulsando ? se muestra")."""
    following = tokens[index + 1] if index + 1 < len(tokens) else ""
    return tokens[index] in {".", "?", "!"} and following[:1].islower()


def _missing_space(token: str, knows: Callable[[str], bool]) -> str | None:
    """The token with the missing space restored ("fin.Luego" → "fin. Luego"), or None."""
    match = _JOINED.match(token.lstrip(OPENING))
    if match is None or _CODE_MARKS.search(token):
        return None
    left, mark, right = match.groups()
    if mark in ".:!?" and not (right[:1].isupper() and right[1:].islower() and left.islower()):
        return None
    if len(right) == 1 and not (mark in ",;" and right in _ONE_LETTER_WORDS):
        return None
    if not (knows(left) and knows(right)):
        return None
    return token.replace(f"{left}{mark}{right}", f"{left}{mark} {right}", 1)


def _wide_gaps(tokens: Sequence[str], boxes: Sequence[Box]) -> Iterator[int]:
    """Indexes of words preceded by a gap that reads as a double space in a line of prose."""
    line: list[int] = [0]
    for index in range(1, len(boxes) + 1):
        if index < len(boxes) and _same_line(boxes[index - 1], boxes[index]):
            line.append(index)
            continue
        gaps = {i: boxes[i].x0 - boxes[i - 1].x1 for i in line[1:]}
        if len(gaps) >= _MIN_GAPS_PER_LINE:
            usual = statistics.median(gaps.values())
            height = statistics.median(boxes[i].y1 - boxes[i].y0 for i in line)
            wide = [
                i
                for i, gap in gaps.items()
                if usual > 0
                and _WIDE_GAP[0] * usual <= gap <= _WIDE_GAP[1] * usual
                and gap - usual >= _WIDE_GAP_MIN_HEIGHTS * height
            ]
            # One wide gap between two plain words; several are alignment (tables, leaders), and
            # TeX sets wider spaces after punctuation on purpose.
            if len(wide) == 1 and _plain_pair(tokens[wide[0] - 1], tokens[wide[0]]):
                yield wide[0]
        line = [index]


def _plain_pair(first: str, second: str) -> bool:
    return (
        first[-1:].isalpha()
        and checkable_word(first) is not None
        and checkable_word(second) is not None
    )


def _same_line(a: Box, b: Box) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return b.x0 > a.x1 and overlap > 0.5 * min(a.y1 - a.y0, b.y1 - b.y0)


def _double_space(tokens: Sequence[str], index: int) -> Issue:
    first, second = tokens[index - 1], tokens[index]
    return Issue(
        "grammar.spacing",
        index - 1,
        index,
        f"Espacio doble entre «{first}» y «{second}»",
        f"Double space between '{first}' and '{second}'",
        actual=f"{first}  {second}",
        expected=f"{first} {second}",
        suggestion=f"{first} {second}",
    )

"""The disclaimer auditor: find each required text among the document's words, diff it by word."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from core.audit_models import (
    Auditor,
    Box,
    DisclaimerRule,
    Finding,
    Paragraph,
    Severity,
)

_TOKEN = re.compile(r"\w+")
_FURNITURE = re.compile(
    r"^(?:\d{1,4}|[ivxlcdm]{1,6}|(?:page|p[aá]gina|p\.)\s*\d{1,4}(?:\s*(?:of|de|/)\s*\d{1,4})?"
    r"|\d{1,4}\s*(?:of|de|/)\s*\d{1,4})$",
    re.IGNORECASE,
)
_CANDIDATES = 3
# A match keeps the disclaimer's identity when at least this share of its words is intact and
# the edits stay below this share of its length; otherwise the disclaimer counts as missing.
_MIN_MATCHED = 0.5
_MAX_COST = 0.5


@dataclass(frozen=True)
class _Token:
    """One word-like token of the document with where it came from."""

    norm: str
    text: str
    word: int
    """Index of the source word in the document's word sequence."""
    free: bool
    """It belongs to page furniture (a page number): skipping it costs nothing."""


@dataclass(frozen=True)
class _Match:
    """The best alignment of a required text with the document."""

    cost: int
    matched: int
    ops: list[tuple[str, list[int], list[int]]]
    """Aligned runs: (op, required token indexes, document token indexes), op in =, ~, -, +."""


@dataclass(frozen=True)
class _DocWords:
    """The document as one sequence of words and tokens."""

    pages: list[int]
    boxes: list[Box]
    texts: list[str]
    tokens: list[_Token]


def audit_disclaimers(
    paragraphs: Sequence[Paragraph], rules: Sequence[DisclaimerRule], language: str
) -> list[Finding]:
    """A present, altered, wrong-page or missing finding per required disclaimer."""
    document = _document_words(paragraphs)
    last_page = max((p.page for p in paragraphs), default=1)
    findings = []
    for rule in rules:
        texts = [rule.text[language]] if language in rule.text else list(rule.text.values())
        best: tuple[float, str, _Match] | None = None
        for text in texts:
            required = _tokens(text)
            if not required:
                continue
            match = _best_match(required, document.tokens, prefer_last=rule.pages == "last")
            if match is None:
                continue
            score = match.cost / len(required)
            if best is None or score < best[0]:
                best = (score, text, match)
        message_language = language if language in ("es", "en") else "en"
        findings.append(_finding(rule, best, document, last_page, message_language, texts[0]))
    return findings


def _document_words(paragraphs: Sequence[Paragraph]) -> _DocWords:
    """Every word of every paragraph in order, split into comparable tokens."""
    pages: list[int] = []
    boxes: list[Box] = []
    texts: list[str] = []
    tokens: list[_Token] = []
    for paragraph in paragraphs:
        furniture = _FURNITURE.match(paragraph.text.strip()) is not None
        for word in paragraph.words:
            index = len(texts)
            pages.append(paragraph.page)
            boxes.append(word.box)
            texts.append(word.text)
            for token in _tokens(word.text):
                tokens.append(_Token(token.norm, token.text, index, furniture))
    return _DocWords(pages, boxes, texts, tokens)


def _tokens(text: str) -> list[_Token]:
    """Word-like tokens of a text, compared without case and punctuation."""
    normal = unicodedata.normalize("NFC", text)
    return [_Token(m.group().casefold(), m.group(), -1, False) for m in _TOKEN.finditer(normal)]


def _best_match(
    required: list[_Token], tokens: list[_Token], *, prefer_last: bool
) -> _Match | None:
    """The lowest-cost alignment of the required tokens around the likeliest windows."""
    starts = _candidate_starts([t.norm for t in required], [t.norm for t in tokens])
    n = len(required)
    best: _Match | None = None
    for start in starts:
        low = max(0, start - n // 2 - 2)
        high = min(len(tokens), start + n + n // 2 + 2)
        match = _align(required, tokens, low, high)
        better = best is None or match.cost < best.cost
        tie = best is not None and match.cost == best.cost
        if better or (tie and prefer_last):
            best = match
    return best


def _candidate_starts(required: list[str], tokens: list[str]) -> list[int]:
    """Starts of the windows of the required length holding most of its words, best first."""
    need = Counter(required)
    n = len(required)
    have: Counter[str] = Counter()
    score = 0
    scored: list[tuple[int, int]] = []
    for index, token in enumerate(tokens):
        if have[token] < need[token]:
            score += 1
        have[token] += 1
        if index >= n:
            old = tokens[index - n]
            have[old] -= 1
            if have[old] < need[old]:
                score -= 1
        scored.append((score, max(0, index - n + 1)))
    ranked = sorted(scored, key=lambda pair: (-pair[0], pair[1]))
    starts: list[int] = []
    for score, start in ranked:
        if score == 0 or len(starts) == _CANDIDATES:
            break
        if all(abs(start - other) > n for other in starts):
            starts.append(start)
    return sorted(starts)


def _align(required: list[_Token], tokens: list[_Token], low: int, high: int) -> _Match:
    """Semi-global word alignment: all of `required` against any span of tokens[low:high].

    Substitutions, missing and extra words cost 1; page numbers in between cost nothing, and a
    word split in two (hyphenation across a page, "bien-estar") matches its joined form.
    """
    window = tokens[low:high]
    n, m = len(required), len(window)
    inf = 10**9
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    move: list[list[str]] = [[""] * (m + 1) for _ in range(n + 1)]
    for j in range(m + 1):
        cost[0][j] = 0
    # For a token, the nearest earlier token that is not page furniture (-1 when none).
    before: list[int] = []
    for j in range(m):
        q = j - 1
        while q >= 0 and window[q].free:
            q -= 1
        before.append(q)
    for i in range(1, n + 1):
        req = required[i - 1].norm
        for j in range(m + 1):
            options: list[tuple[int, str]] = []
            if j:
                doc = window[j - 1]
                options.append((cost[i - 1][j - 1] + (doc.norm != req), "=~"[doc.norm != req]))
                q = before[j - 1]
                if q >= 0 and window[q].norm + doc.norm == req:
                    options.append((cost[i - 1][q], "2"))
                if i >= 2 and required[i - 2].norm + req == doc.norm:
                    options.append((cost[i - 2][j - 1], "j"))
                options.append((cost[i][j - 1] + (not doc.free), "+"))
            options.append((cost[i - 1][j] + 1, "-"))
            cost[i][j], move[i][j] = min(options, key=lambda option: option[0])
    end = min(range(m + 1), key=lambda j: (cost[n][j], j))
    steps: list[tuple[str, list[int], list[int]]] = []
    i, j = n, end
    while i > 0:
        op = move[i][j]
        if op in "=~":
            steps.append((op, [i - 1], [low + j - 1]))
            i, j = i - 1, j - 1
        elif op == "-":
            steps.append(("-", [i - 1], []))
            i -= 1
        elif op == "+":
            if not window[j - 1].free:
                steps.append(("+", [], [low + j - 1]))
            j -= 1
        elif op == "2":
            q = before[j - 1]
            steps.append(("=", [i - 1], [low + q, low + j - 1]))
            i, j = i - 1, q
        else:
            steps.append(("=", [i - 2, i - 1], [low + j - 1]))
            i, j = i - 2, j - 1
    steps.reverse()
    matched = sum(len(req) for op, req, _ in steps if op == "=")
    return _Match(cost=cost[n][end], matched=matched, ops=_runs(steps))


def _runs(steps: list[tuple[str, list[int], list[int]]]) -> list[tuple[str, list[int], list[int]]]:
    """Consecutive edits merged into runs; a run of - and + around ~ becomes one ~ run."""
    runs: list[tuple[str, list[int], list[int]]] = []
    for op, req, doc in steps:
        if runs and (op == runs[-1][0] or (op != "=" and runs[-1][0] != "=")):
            last_op = runs[-1][0] if op == runs[-1][0] else "~"
            runs[-1] = (last_op, runs[-1][1] + req, runs[-1][2] + doc)
        else:
            runs.append((op, req, doc))
    # A replacement run with nothing on one side is a plain omission or insertion.
    return [
        ("-" if op == "~" and not doc else "+" if op == "~" and not req else op, req, doc)
        for op, req, doc in runs
    ]


def _finding(
    rule: DisclaimerRule,
    best: tuple[float, str, _Match] | None,
    document: _DocWords,
    last_page: int,
    language: str,
    fallback_text: str,
) -> Finding:
    """The finding for one rule from its best match."""
    if best is None:
        return _missing(rule, fallback_text, language)
    _, text, match = best
    required = _tokens(text)
    n = len(required)
    if match.matched < _MIN_MATCHED * n or match.cost > _MAX_COST * n:
        return _missing(rule, text, language)
    words = sorted(
        {document.tokens[t].word for _, _, doc in match.ops for t in doc}
        - {token.word for token in document.tokens if token.free}
    )
    first_page = document.pages[words[0]]
    box = _union([document.boxes[w] for w in words if document.pages[w] == first_page])
    actual = " ".join(document.texts[w] for w in words)
    located = {"page": first_page, "box": box, "expected": text, "actual": actual}
    wrong_page = (rule.pages == "first" and first_page != 1) or (
        rule.pages == "last" and document.pages[words[-1]] != last_page
    )
    if match.cost == 0 and not wrong_page:
        return Finding(
            auditor=Auditor.DISCLAIMER,
            rule="disclaimer.present",
            severity=Severity.INFO,
            message=_say(language, "present", rule.id, first_page),
            message_en=_say("en", "present", rule.id, first_page),
            **located,
        )
    if match.cost == 0:
        where = "la primera página" if rule.pages == "first" else "la última página"
        where_en = "the first page" if rule.pages == "first" else "the last page"
        return Finding(
            auditor=Auditor.DISCLAIMER,
            rule="disclaimer.wrong_page",
            severity=rule.severity,
            message=(
                f"El aviso «{rule.id}» está en la página {first_page}, no en {where}."
                if language == "es"
                else f"Disclaimer '{rule.id}' is on page {first_page}, not on {where_en}."
            ),
            message_en=f"Disclaimer '{rule.id}' is on page {first_page}, not on {where_en}.",
            suggestion=f"Move the disclaimer to {where_en}.",
            **located,
        )
    diff_es = _describe(match, required, document, "es")
    diff_en = _describe(match, required, document, "en")
    return Finding(
        auditor=Auditor.DISCLAIMER,
        rule="disclaimer.altered",
        severity=rule.severity,
        message=(
            f"El aviso «{rule.id}» está alterado (página {first_page}): {diff_es}."
            if language == "es"
            else f"Disclaimer '{rule.id}' is altered (page {first_page}): {diff_en}."
        ),
        message_en=f"Disclaimer '{rule.id}' is altered (page {first_page}): {diff_en}.",
        suggestion=text,
        **located,
    )


def _missing(rule: DisclaimerRule, text: str, language: str) -> Finding:
    return Finding(
        auditor=Auditor.DISCLAIMER,
        rule="disclaimer.missing",
        severity=rule.severity,
        message=_say(language, "missing", rule.id, None),
        message_en=_say("en", "missing", rule.id, None),
        expected=text,
        suggestion=text,
    )


def _say(language: str, status: str, rule_id: str, page: int | None) -> str:
    if status == "present":
        if language == "es":
            return f"El aviso «{rule_id}» está presente e íntegro (página {page})."
        return f"Disclaimer '{rule_id}' is present and intact (page {page})."
    if language == "es":
        return f"Falta el aviso obligatorio «{rule_id}»."
    return f"The required disclaimer '{rule_id}' is missing."


def _describe(match: _Match, required: list[_Token], document: _DocWords, language: str) -> str:
    """The word-level differences, e.g. '"tercero" instead of "terceros"; missing "no"'."""
    parts = []
    for op, req, doc in match.ops:
        want = " ".join(required[i].text for i in req)
        got = " ".join(document.tokens[i].text for i in doc if not document.tokens[i].free)
        if op == "~":
            parts.append(
                f"«{got}» en lugar de «{want}»"
                if language == "es"
                else f'"{got}" instead of "{want}"'
            )
        elif op == "-":
            parts.append(f"falta «{want}»" if language == "es" else f'missing "{want}"')
        elif op == "+" and got:
            parts.append(f"sobra «{got}»" if language == "es" else f'extra "{got}"')
    return "; ".join(parts)


def _union(boxes: list[Box]) -> Box:
    return Box(
        x0=min(b.x0 for b in boxes),
        y0=min(b.y0 for b in boxes),
        x1=max(b.x1 for b in boxes),
        y1=max(b.y1 for b in boxes),
    )

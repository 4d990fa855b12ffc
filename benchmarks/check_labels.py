"""Check labelled retrieval questions against the corpus chapters they point to.

Usage: python benchmarks/check_labels.py [QUESTIONS.jsonl ...]   (default: both shipped files)

For every answer span the script counts its occurrences in the visible text of the question's
document (case, Unicode form and whitespace folded, as core.evaluation.fold does). An answer must
occur at least once and at most MAX_OCCURRENCES times, in the text extracted both with and without
a separator between elements, so that it does not depend on how a parser joins inline tags, and
inside one block element (paragraph, list item, cell, <pre>) so that a chunker can keep it whole. It
also reports answers found only in data tables (DocBook's table.table; tips and notes are layout
tables and count as prose) or <pre> blocks, and queries that copy a long run of document words.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from core.evaluation import EvalQuestion, fold, load_questions

BENCHMARKS = Path(__file__).resolve().parent
CORPUS = BENCHMARKS / "corpus"
DEFAULT_FILES = [BENCHMARKS / "retrieval_en.jsonl", BENCHMARKS / "retrieval_es.jsonl"]
MAX_OCCURRENCES = 3
COPIED_RUN_WARNING = 6
BLOCKS = "p, li, dt, dd, td, th, pre, h1, h2, h3, h4, h5, h6"
WORD = re.compile(r"[\w/.$=~:-]+")


@dataclass(frozen=True)
class DocumentText:
    """Folded visible text of one chapter, in the forms the checks need."""

    spaced: str
    joined: str
    prose: str
    words: str
    blocks: tuple[str, ...]


def _visible_text(html: str, separator: str, drop: str) -> str:
    tree = LexborHTMLParser(html)
    for node in tree.css(drop):
        node.decompose()
    body = tree.body
    return fold(body.text(separator=separator) if body is not None else "")


@cache
def document_text(name: str) -> DocumentText:
    """Return the folded texts of a corpus chapter found by file name."""
    matches = sorted(CORPUS.glob(f"*/{name}"))
    if len(matches) != 1:
        raise FileNotFoundError(f"{name}: expected one file under {CORPUS}, found {len(matches)}")
    html = matches[0].read_text(encoding="utf-8")
    spaced = _visible_text(html, " ", "head, script, style")
    tree = LexborHTMLParser(html)
    return DocumentText(
        spaced=spaced,
        joined=_visible_text(html, "", "head, script, style"),
        prose=_visible_text(html, " ", "head, script, style, table.table, pre"),
        words=" " + " ".join(WORD.findall(spaced)) + " ",
        blocks=tuple(fold(node.text(separator=" ")) for node in tree.css(BLOCKS)),
    )


def longest_copied_run(query: str, doc: DocumentText) -> int:
    """Return the length of the longest run of consecutive query words found in the document."""
    words = WORD.findall(fold(query))
    best = 0
    for start in range(len(words)):
        for end in range(start + best + 1, len(words) + 1):
            if f" {' '.join(words[start:end])} " not in doc.words:
                break
            best = end - start
    return best


@dataclass
class Verdict:
    """What the checks found for one question."""

    counts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_question(q: EvalQuestion) -> Verdict:
    """Return the occurrence counts, errors and warnings for one question."""
    verdict = Verdict()
    if q.document is None:
        verdict.errors.append("no document given")
        return verdict
    try:
        doc = document_text(q.document)
    except FileNotFoundError as exc:
        verdict.errors.append(str(exc))
        return verdict
    for answer in q.answers:
        span = fold(answer)
        spaced, joined, prose = (
            doc.spaced.count(span),
            doc.joined.count(span),
            doc.prose.count(span),
        )
        where = f"{answer!r} x{spaced}"
        verdict.counts.append(where)
        if spaced == 0 or joined == 0:
            verdict.errors.append(f"{answer!r} not found (spaced x{spaced}, joined x{joined})")
        elif spaced > MAX_OCCURRENCES:
            verdict.errors.append(f"{where}: more than {MAX_OCCURRENCES} occurrences")
        elif not any(span in block for block in doc.blocks):
            verdict.errors.append(f"{where}: not inside one paragraph, item, cell or <pre>")
        elif prose == 0:
            verdict.warnings.append(f"{where}: only inside data tables or <pre>")
    copied = longest_copied_run(q.query, doc)
    if copied >= COPIED_RUN_WARNING:
        verdict.warnings.append(f"query copies {copied} consecutive words from the document")
    return verdict


def check_file(path: Path) -> int:
    """Print a report for one question file and return its number of failing questions."""
    questions = load_questions(path)
    queries = Counter(fold(q.query) for q in questions)
    failures = 0
    print(f"== {path.name}: {len(questions)} questions")
    for number, q in enumerate(questions, start=1):
        verdict = check_question(q)
        if queries[fold(q.query)] > 1:
            verdict.errors.append("duplicate query")
        status = "FAIL" if verdict.errors else ("warn" if verdict.warnings else "ok")
        print(f"{status:4} {number:3} {q.document}  {q.query[:70]!r}  {', '.join(verdict.counts)}")
        for message in verdict.errors + verdict.warnings:
            print(f"           - {message}")
        failures += bool(verdict.errors)
    per_document = Counter(str(q.document) for q in questions)
    print("   per document: " + ", ".join(f"{d} {c}" for d, c in sorted(per_document.items())))
    return failures


def main() -> int:
    """Check every given question file and return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES)
    args = parser.parse_args()
    failures = sum(check_file(path) for path in args.files)
    print(f"{'FAILED' if failures else 'PASSED'}: {failures} failing question(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

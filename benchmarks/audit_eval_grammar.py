"""Precision and recall of the grammar auditor on real Debian Reference sentences, errors planted.

Run: .venv/bin/python benchmarks/audit_eval_grammar.py [--regenerate] [--isolated]

The cases live in benchmarks/audit_grammar_cases.jsonl. With --regenerate they are rebuilt
(seeded, so the same file comes out) from the English and Spanish chapters in benchmarks/corpus:
real sentences, 250 per language kept clean and the others given exactly one planted error:
- spelling: a word changed by a swap, a drop, a doubled or replaced letter, or (Spanish) a removed
  accent; only changes that make a non-word of the language are planted (a change that makes
  another real word is an error no dictionary can see);
- repeated_word: a word doubled; spacing: a space before a comma or full stop, or the space after
  one removed; punctuation_pairing (Spanish): a sentence turned into a question or exclamation
  with one of its marks dropped; accent (Spanish): "está", "más", "él", "tú", "sí", "aún" or an
  interrogative written without its accent.
Each language is audited as one document (the cases' paragraphs in order, as a report would have
them), or each case alone with --isolated. For every rule the script prints recall (planted errors
found), precision counting findings on real errors of the corpus text itself (SOURCE_ERRORS,
judged by reading each sentence) as correct, and strict precision counting them as false; then
the share of clean sentences with a false spelling alarm, how often the spelling suggestion is
the original word, the throughput in paragraphs per second (word lists already loaded), and
every real-error and false-alarm finding so the judgement can be checked.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.audit_models import Box, Paragraph, SpellingRule, Word  # noqa: E402
from core.language import guess_language  # noqa: E402
from tasks.audit.grammar import audit_grammar  # noqa: E402
from tasks.audit.spelling import checkable_word, lexicon  # noqa: E402

CASES = REPO / "benchmarks" / "audit_grammar_cases.jsonl"
CORPUS = REPO / "benchmarks" / "corpus"
SEED = 20261129
PER_LANGUAGE = {"clean": 250, "spelling": 200, "repeated_word": 40, "spacing": 60}
SPANISH_ONLY = {"punctuation_pairing": 40, "accent": 60}
RULES = ["spelling", "repeated_word", "spacing", "punctuation_pairing", "accent"]
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[¿¡\"«(]?[A-ZÁÉÍÓÚÑ])")
_ACCENTED = {
    "está": "esta",
    "más": "mas",
    "él": "el",
    "tú": "tu",
    "sí": "si",
    "aún": "aun",
    "qué": "que",
    "cómo": "como",
    "cuándo": "cuando",
    "dónde": "donde",
    "quién": "quien",
    "cuál": "cual",
}


def corpus_sentences(language: str) -> list[str]:
    """Real prose sentences of the language's chapters (paragraph text, one sentence each)."""
    from selectolax.lexbor import LexborHTMLParser

    sentences: list[str] = []
    for path in sorted((CORPUS / language).glob("*.html")):
        tree = LexborHTMLParser(path.read_text(encoding="utf-8"))
        for node in tree.css("div.section p, div.chapter > p"):
            text = " ".join(node.text(separator="").split())
            for sentence in _SENTENCE_SPLIT.split(text):
                words = sentence.split()
                if not 8 <= len(words) <= 45 or sentence[-1] not in ".:":
                    continue
                guess = guess_language(sentence)
                if guess.language == language and guess.confident:
                    sentences.append(sentence)
    return list(dict.fromkeys(sentences))


Maker = Callable[[str, str], "tuple[str, dict[str, Any] | None] | None"]


def build_cases() -> list[dict[str, Any]]:
    """Seeded cases in both languages: clean sentences and sentences with one planted error."""
    rng = random.Random(SEED)
    cases: list[dict[str, Any]] = []
    for language in ("en", "es"):
        pool = corpus_sentences(language)
        rng.shuffle(pool)
        plan = (SPANISH_ONLY if language == "es" else {}) | PER_LANGUAGE
        makers: dict[str, Maker] = {
            "clean": lambda s, _lang: (s, None),
            "spelling": lambda s, lang: plant_misspelling(s, lang, rng),
            "repeated_word": lambda s, _lang: plant_repeat(s, rng),
            "spacing": lambda s, _lang: plant_spacing(s, rng),
            "punctuation_pairing": lambda s, _lang: plant_pairing(s, rng),
            "accent": lambda s, _lang: plant_accent(s),
        }
        # The most selective kinds pick first; clean sentences are the ones left over.
        for kind in sorted(plan, key=lambda k: (k == "clean", k == "spelling", k)):
            made, left = 0, []
            for sentence in pool:
                result = makers[kind](sentence, language) if made < plan[kind] else None
                if result is None:
                    left.append(sentence)
                    continue
                text, planted = result
                cases.append(
                    {
                        "id": f"{language}-{kind}-{made:03d}",
                        "language": language,
                        "kind": kind,
                        "text": text,
                        "planted": planted,
                    }
                )
                made += 1
            pool = left
    return cases


def _candidates(tokens: list[str], minimum: int = 5) -> list[int]:
    """Indexes of plain lower-case known words (not the first) that a change can be planted in."""
    return [
        i
        for i, token in enumerate(tokens)
        if i > 0
        and (word := checkable_word(token)) is not None
        and word == token.strip(".,;:")
        and word.isalpha()
        and word.islower()
        and len(word) >= minimum
    ]


def plant_misspelling(
    sentence: str, language: str, rng: random.Random
) -> tuple[str, dict[str, Any]] | None:
    """The sentence with one word misspelled, and where and what was planted."""
    tokens = sentence.split(" ")
    words = lexicon(language)  # type: ignore[arg-type]
    indexes = [i for i in _candidates(tokens) if words.has(tokens[i].strip(".,;:"))]
    rng.shuffle(indexes)
    for index in indexes:
        word = tokens[index].strip(".,;:")
        operations = ["swap", "drop", "double", "replace"]
        if language == "es" and any(ch in "áéíóú" for ch in word):
            operations += ["accent"] * 3
        operation = rng.choice(operations)
        wrong = mutate(word, operation, rng)
        if wrong is None or wrong == word or words.has(wrong):
            continue
        tokens[index] = tokens[index].replace(word, wrong, 1)
        planted = {"index": index, "actual": wrong, "expected": word, "operation": operation}
        return " ".join(tokens), planted
    return None


def mutate(word: str, operation: str, rng: random.Random) -> str | None:
    """The word with one typing error of the given kind."""
    i = rng.randrange(1, len(word) - 1)
    if operation == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :] if word[i] != word[i + 1] else None
    if operation == "drop":
        return word[:i] + word[i + 1 :]
    if operation == "double":
        return word[:i] + word[i] + word[i:]
    if operation == "replace":
        return word[:i] + rng.choice("aeioutnrsl".replace(word[i], "")) + word[i + 1 :]
    stripped = unicodedata.normalize("NFD", word)
    return unicodedata.normalize("NFC", "".join(c for c in stripped if c not in "\u0301"))


def plant_repeat(sentence: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The sentence with one short word written twice."""
    tokens = sentence.split(" ")
    indexes = [i for i in _candidates(tokens, minimum=2) if tokens[i].isalpha()]
    if not indexes:
        return None
    index = rng.choice(indexes)
    tokens.insert(index + 1, tokens[index])
    return " ".join(tokens), {"index": index + 1, "actual": f"{tokens[index]} {tokens[index]}"}


def plant_spacing(sentence: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The sentence with a space before a comma/full stop, or the space after one removed."""
    tokens = sentence.split(" ")
    commas = [
        i
        for i, t in enumerate(tokens[:-1])
        if t.endswith(",") and t[:-1].isalpha() and tokens[i + 1].isalpha()
    ]
    kind = rng.choice(["before", "after"])
    if kind == "before" and commas:
        index = rng.choice(commas)
        tokens[index] = tokens[index][:-1]
        tokens.insert(index + 1, ",")
        return " ".join(tokens), {"index": index + 1, "actual": f"{tokens[index]} ,"}
    if kind == "before" and tokens[-1].endswith(".") and tokens[-1][:-1].isalpha():
        tokens[-1] = tokens[-1][:-1]
        tokens.append(".")
        return " ".join(tokens), {"index": len(tokens) - 1, "actual": f"{tokens[-2]} ."}
    if kind == "after" and commas:
        index = rng.choice(commas)
        joined = tokens[index] + tokens.pop(index + 1)
        tokens[index] = joined
        return " ".join(tokens), {"index": index, "actual": joined}
    return None


def plant_pairing(sentence: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The sentence as a Spanish question or exclamation, its opening or closing mark dropped."""
    body = sentence.rstrip(".:")
    if any(ch in body for ch in "¿?¡!"):
        return None
    opener, closer = rng.choice([("¿", "?"), ("¡", "!")])
    tokens = body.split(" ")
    if rng.random() < 0.7:
        tokens[-1] += closer
        return " ".join(tokens), {"index": len(tokens) - 1, "actual": closer}
    tokens[0] = opener + tokens[0]
    return " ".join(tokens), {"index": 0, "actual": opener}


def plant_accent(sentence: str) -> tuple[str, dict[str, Any]] | None:
    """The sentence with the first accent-bearing word of the list written without its accent."""
    tokens = sentence.split(" ")
    for index, token in enumerate(tokens):
        bare = token.strip('.,;:¿?¡!()«»"').lower()
        if bare in _ACCENTED:
            plain = _ACCENTED[bare]
            wrong = token.replace(bare, plain, 1).replace(bare.capitalize(), plain.capitalize(), 1)
            tokens[index] = wrong
            return " ".join(tokens), {"index": index, "actual": wrong, "expected": bare}
    return None


def paragraph(text: str, page: int) -> Paragraph:
    """A paragraph whose word boxes encode the word index (x0 = index * 10)."""
    words = [
        Word(text=token, box=Box(x0=i * 10.0, y0=0.0, x1=i * 10.0 + 8.0, y1=10.0))
        for i, token in enumerate(text.split(" "))
    ]
    return Paragraph(page=page, text=text, words=words)


# Findings at places where nothing was planted that are genuine errors of the Debian Reference
# text itself, judged by reading each sentence (typos, missing accents, "esta" for "está",
# "si mismo" for "sí mismo"). A space before a comma or full stop ("paquetes .") is always an
# error in prose, so unplanted spacing findings of that shape count as real too (listed below).
SOURCE_ERRORS = {
    "en": {"kerrnel", "choses"},
    "es": set(
        [
            "Trás",
            "actuailización",
            "alternatica",
            "anteriro",
            "antiguios",
            "automaticamente",
            "claúsulas",
            "cominezo",
            "conexines",
            "configuracion",
            "crado",
            "dependecias",
            "despercia",
            "distribucion",
            "documetna",
            "erroneo",
            "esan",
            "estaticamente",
            "expresion",
            "foma",
            "herramienas",
            "herramintas",
            "herrramientas",
            "histórcio",
            "imagenes",
            "impotante",
            "inica",
            "integrdidad",
            "manuelmente",
            "omitadas",
            "portener",
            "proporcinado",
            "realizr",
            "recomentado",
            "respositorio",
            "restringuen",
            "restrinje",
            "suar",
            "superusurio",
            "supuerusuario",
            "términa",
            "unicamente",
            "versiónes",
            "únicamante",
            "firware",
            "contegan",
            "deine",
            "sensao",
            "kery",
            "pueede",
        ]
    ),
}
SOURCE_ACCENT_ERRORS = {"esta", "si", "Esta", "mas"}
_SPACE_BEFORE = re.compile(r"^\S*[^\W\d_] [,.;:]$")


def _source_error(language: str, name: str, actual: str | None) -> bool:
    """Whether an unplanted finding points at a real error of the corpus text (see above)."""
    if actual is None:
        return False
    if name == "spelling":
        return actual in SOURCE_ERRORS[language]
    if name == "accent":
        return actual in SOURCE_ACCENT_ERRORS
    return name == "spacing" and _SPACE_BEFORE.match(actual) is not None


def evaluate(cases: list[dict[str, Any]], isolated: bool) -> None:
    """Audit the cases and print precision and recall per language and rule."""
    rule = SpellingRule()
    audit_grammar([paragraph("Load the word lists first.", 1)], rule)
    for language in ("en", "es"):
        chosen = [c for c in cases if c["language"] == language]
        paragraphs = [paragraph(c["text"], page=n + 1) for n, c in enumerate(chosen)]
        started = time.perf_counter()
        if isolated:
            findings = [f for p in paragraphs for f in audit_grammar([p], rule)]
        else:
            findings = audit_grammar(paragraphs, rule)
        seconds = time.perf_counter() - started
        by_case: dict[int, list[Any]] = defaultdict(list)
        for finding in findings:
            by_case[(finding.page or 1) - 1].append(finding)
        tp: Counter[str] = Counter()
        fp: Counter[str] = Counter()
        real: Counter[str] = Counter()
        planted: Counter[str] = Counter()
        right_suggestions = 0
        clean_flagged = clean_flagged_real = clean_words = 0
        false_alarms: list[str] = []
        real_errors: list[str] = []
        for n, case in enumerate(chosen):
            kind = case["kind"]
            if kind != "clean":
                planted[kind] += 1
            else:
                clean_words += len(case["text"].split())
            found_planted = False
            flagged = flagged_real = False
            for finding in by_case[n]:
                name = finding.rule.removeprefix("grammar.")
                first, last = int(finding.box.x0 // 10), int(finding.box.x1 // 10)
                hit = (
                    name == kind
                    and case["planted"] is not None
                    and first <= case["planted"]["index"] <= last
                )
                line = f"{name}: {finding.actual!r} -> {finding.suggestion!r}"
                if hit and not found_planted:
                    tp[name] += 1
                    found_planted = True
                    if name == "spelling" and finding.suggestion == case["planted"]["expected"]:
                        right_suggestions += 1
                elif not hit and _source_error(language, name, finding.actual):
                    real[name] += 1
                    real_errors.append(line)
                    flagged_real = flagged_real or name == "spelling"
                elif not hit:
                    fp[name] += 1
                    false_alarms.append(line)
                    flagged = flagged or name == "spelling"
            if kind == "clean":
                clean_flagged += flagged
                clean_flagged_real += flagged_real
        clean = sum(1 for c in chosen if c["kind"] == "clean")
        mode = "each case alone" if isolated else "one document"
        print(
            f"\n== {language}: {len(chosen)} cases ({clean} clean), {len(findings)} findings, "
            f"{len(paragraphs) / seconds:.0f} paragraphs/s ({mode})"
        )
        print(
            f"{'rule':20} {'planted':>7} {'found':>5} {'real':>5} {'false':>5} "
            f"{'precision':>9} {'strict':>6} {'recall':>6}"
        )
        for name in RULES:
            if not planted[name] and not fp[name] and not real[name]:
                continue
            correct = tp[name] + real[name]
            precision = correct / (correct + fp[name]) if correct + fp[name] else 1.0
            strict = tp[name] / (tp[name] + real[name] + fp[name]) if correct + fp[name] else 1.0
            recall = tp[name] / planted[name] if planted[name] else float("nan")
            print(
                f"{name:20} {planted[name]:7d} {tp[name]:5d} {real[name]:5d} {fp[name]:5d} "
                f"{precision:9.3f} {strict:6.3f} {recall:6.3f}"
            )
        print(
            f"clean sentences with a false spelling alarm: {clean_flagged}/{clean} "
            f"({clean_flagged / clean:.1%}, {1000 * clean_flagged / clean_words:.2f} per 1000 "
            f"words); with a real source error found: {clean_flagged_real}"
        )
        if tp["spelling"]:
            print(
                f"spelling suggestion = the original word: {right_suggestions}/{tp['spelling']} "
                f"({right_suggestions / tp['spelling']:.1%})"
            )
        for line in sorted(real_errors):
            print(f"  real error in the source  {line}")
        for line in sorted(false_alarms):
            print(f"  false alarm               {line}")


def main() -> None:
    """Build or load the cases and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--regenerate", action="store_true", help="rebuild the cases from the corpus"
    )
    parser.add_argument("--isolated", action="store_true", help="audit each case on its own")
    args = parser.parse_args()
    if args.regenerate or not CASES.exists():
        cases = build_cases()
        with CASES.open("w", encoding="utf-8") as out:
            for case in cases:
                out.write(json.dumps(case, ensure_ascii=False) + "\n")
    else:
        cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]
    evaluate(cases, args.isolated)


if __name__ == "__main__":
    main()

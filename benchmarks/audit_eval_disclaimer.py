"""Labelled disclaimer variants: generated PDFs through the disclaimer auditor, scored.

Run: .venv/bin/python benchmarks/audit_eval_disclaimer.py [--show-errors]

Builds at least 100 PDFs (reportlab, embedded fonts), each with one variant of a required
Spanish or English disclaimer among body paragraphs: kept intact but broken across lines or
pages, hyphenated, in other case or spacing, on rotated or cropped pages (label "present");
with one word changed, dropped, added, accent-stripped or two words swapped (label "altered");
or left out (label "missing"). Reads each PDF with tasks.audit.layout.read_paragraphs, runs
tasks.audit.disclaimer.audit_disclaimers, and prints accuracy per label and overall (target
100 %), plus precision and recall of "flagged" (altered or missing) findings.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.audit_models import DisclaimerRule  # noqa: E402
from tasks.audit.disclaimer import audit_disclaimers  # noqa: E402
from tasks.audit.layout import read_paragraphs  # noqa: E402
from tests.audit_docgen import Para, break_lines, hyphenate, make_audit_pdf  # noqa: E402

TEXTS = {
    "es": (
        "Este documento es confidencial y está destinado exclusivamente a su destinatario. "
        "Queda prohibida su copia o distribución sin autorización previa por escrito de "
        "Octavius."
    ),
    "en": (
        "This document is confidential and intended solely for its addressee. Copying or "
        "distribution without the prior written authorization of Octavius is prohibited."
    ),
}
BODIES = {
    "es": [
        "El servidor de copias de seguridad se ejecuta cada noche y conserva siete copias "
        "diarias en el almacenamiento externo de la oficina central.",
        "La red interna usa direcciones privadas y el cortafuegos solo admite conexiones "
        "cifradas desde las sucursales autorizadas por el equipo de sistemas.",
        "Los informes trimestrales se publican en el portal interno una vez revisados por el "
        "comité de dirección y por el departamento financiero.",
    ],
    "en": [
        "The backup server runs every night and keeps seven daily copies on the external "
        "storage of the head office.",
        "The internal network uses private addresses and the firewall only accepts encrypted "
        "connections from branches approved by the systems team.",
        "Quarterly reports are published on the intranet once the board and the finance "
        "department have reviewed them.",
    ],
}
REPLACEMENTS = {
    "es": ["permitida", "pública", "libre", "anterior", "tercero", "cliente"],
    "en": ["allowed", "public", "freely", "later", "third", "customer"],
}
ACCENTED = {"es": ["está", "distribución", "autorización"], "en": []}
RULE = DisclaimerRule(id="confidentiality", text=TEXTS)
LABELS = {"disclaimer.present": "present", "disclaimer.altered": "altered"}


@dataclass
class Case:
    """One labelled document: its pages, page options and the expected outcome."""

    name: str
    language: str
    pages: list[list[Para]]
    label: str
    options: dict[str, object]


def cases(rng: random.Random) -> list[Case]:
    """Every labelled variant, at least 100."""
    out: list[Case] = []
    for language, text in TEXTS.items():
        body = BODIES[language]
        words = text.split()

        def add(
            name: str, pages: list[list[Para]], label: str, lang: str = language, **options: object
        ) -> None:
            out.append(Case(f"{lang}-{name}", lang, pages, label, options))

        add("exact", [[body[0], text, body[1]]], "present")
        add("exact-first", [[text, body[0]]], "present")
        add("exact-last-page", [[body[0], body[1]], [body[2], text]], "present")
        for per_line in (2, 3, 4, 5, 7, 9):
            add(f"lines-{per_line}", [[body[0], break_lines(text, per_line)]], "present")
        for cut in (3, 7, 11, 15, len(words) - 2):
            head, tail = " ".join(words[:cut]), " ".join(words[cut:])
            add(f"page-break-{cut}", [[body[0], body[1], head], [tail, body[2]]], "present")
        long_words = [w.strip(".,") for w in words if len(w.strip(".,")) >= 8]
        for word in long_words[:5]:
            add(f"hyphen-{word}", [[body[0], hyphenate(text, word, 4)]], "present")
        for word in long_words[:3]:
            index = next(i for i, w in enumerate(words) if w.strip(".,") == word)
            head = " ".join(words[:index]) + f" {word[:4]}-"
            tail = word[4:] + words[index][len(word) :] + " " + " ".join(words[index + 1 :])
            add(f"hyphen-page-{word}", [[body[0], head], [tail.strip()]], "present")
        add("upper", [[body[0], text.upper()]], "present")
        add("lower", [[body[0], text.lower()]], "present")
        add("spaces", [[body[0], text.replace(" ", "   ")]], "present")
        add("small-type", [[body[0], (text, "Vera", 8.0)]], "present")
        add("italic", [[body[0], (text, "VeraIt", 10.0)]], "present")
        add("rotated-90", [[body[0], text]], "present", rotate=90)
        add("rotated-270", [[body[0], text]], "present", rotate=270)
        add("cropped", [[body[0], text]], "present", cropbox=(40, 60, 560, 800))

        content = [i for i, w in enumerate(words) if len(w.strip(".,")) > 3]
        for index in rng.sample(content, 8):
            swapped = list(words)
            swapped[index] = rng.choice(REPLACEMENTS[language]) + words[index][-1:].strip(
                "abcdefghijklmnopqrstuvwxyzáéíóú"
            )
            add(f"changed-{index}", [[body[0], " ".join(swapped)]], "altered")
        for index in rng.sample(range(len(words)), 6):
            dropped = words[:index] + words[index + 1 :]
            add(f"dropped-{index}", [[body[0], " ".join(dropped)]], "altered")
        for index in rng.sample(range(1, len(words)), 4):
            extra = [*words[:index], "no", *words[index:]]
            add(f"added-{index}", [[body[0], " ".join(extra)]], "altered")
        for index in rng.sample(range(len(words) - 1), 3):
            swapped = list(words)
            swapped[index], swapped[index + 1] = swapped[index + 1], swapped[index]
            if swapped != words:
                add(f"swapped-{index}", [[body[0], " ".join(swapped)]], "altered")
        for word in ACCENTED[language]:
            plain = word.replace("á", "a").replace("ó", "o")
            add(f"accent-{plain}", [[body[0], text.replace(word, plain, 1)]], "altered")
        changed_across = " ".join(words[:9]), " ".join(words[9:]).replace(words[12], "xyz", 1)
        add("changed-across-page", [[body[0], changed_across[0]], [changed_across[1]]], "altered")

        add("absent", [[body[0], body[1]], [body[2]]], "missing")
        add("absent-short", [[body[0]]], "missing")
        add("first-half-only", [[body[0], " ".join(words[: len(words) // 3])]], "missing")
        other = "en" if language == "es" else "es"
        add("other-topic", [[*BODIES[other], body[0]]], "missing")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args()
    rng = random.Random(4)
    labelled = cases(rng)
    confusion: Counter[tuple[str, str]] = Counter()
    wrong: list[tuple[Case, str, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="octavius-disclaimer-eval-") as folder:
        for number, case in enumerate(labelled):
            pdf = make_audit_pdf(Path(folder) / f"{number}.pdf", case.pages, **case.options)  # type: ignore[arg-type]
            (finding,) = audit_disclaimers(read_paragraphs(pdf), [RULE], case.language)
            got = LABELS.get(finding.rule, "missing")
            confusion[(case.label, got)] += 1
            if got != case.label:
                wrong.append((case, got, finding.message_en))
    seconds = time.perf_counter() - started
    total = len(labelled)
    correct = sum(n for (want, got), n in confusion.items() if want == got)
    print(f"disclaimer variants: {total} cases in {seconds:.1f} s")
    for label in ("present", "altered", "missing"):
        n = sum(v for (want, _), v in confusion.items() if want == label)
        ok = confusion[(label, label)]
        print(f"  {label:8s} {ok:3d}/{n:3d} correct")
    flagged_true = sum(v for (w, g), v in confusion.items() if w != "present" and g != "present")
    flagged = sum(v for (_, g), v in confusion.items() if g != "present")
    positives = sum(v for (w, _), v in confusion.items() if w != "present")
    precision = flagged_true / flagged if flagged else 1.0
    recall = flagged_true / positives if positives else 1.0
    print(f"flagged (altered or missing): precision {precision:.3f}, recall {recall:.3f}")
    print(f"accuracy: {correct}/{total} = {correct / total:.1%} (target 100%)")
    if args.show_errors or wrong:
        for case, got, message in wrong:
            print(f"  WRONG {case.name}: want {case.label}, got {got}: {message}")


if __name__ == "__main__":
    main()

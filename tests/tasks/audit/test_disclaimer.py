"""The disclaimer auditor on real PDFs: every planted variant classified, with page and box."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.audit_models import DisclaimerRule, Finding, Severity
from tasks.audit.disclaimer import audit_disclaimers
from tasks.audit.layout import read_paragraphs
from tests.audit_docgen import Para, break_lines, hyphenate, make_audit_pdf

ES = (
    "Este documento es confidencial y está destinado exclusivamente a su destinatario. "
    "Queda prohibida su copia o distribución sin autorización previa por escrito de Octavius."
)
EN = (
    "This document is confidential and intended solely for its addressee. Copying or "
    "distribution without the prior written authorization of Octavius is prohibited."
)
RULE = DisclaimerRule(id="confidentiality", text={"es": ES, "en": EN})
BODY_ES = (
    "El servidor de copias de seguridad se ejecuta cada noche y conserva siete copias "
    "diarias en el almacenamiento externo de la oficina central."
)
BODY_EN = "The firewall blocks every incoming connection except SSH and HTTPS on the gateway."


def _audit(tmp_path: Path, pages: list[list[Para]], language: str = "es", **kw: object) -> Finding:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", pages, **kw)  # type: ignore[arg-type]
    findings = audit_disclaimers(read_paragraphs(pdf), [RULE], language)
    assert len(findings) == 1
    return findings[0]


@pytest.mark.parametrize(
    "pages",
    [
        # exact, in its own paragraph after the body
        [[BODY_ES, ES]],
        # wrapped across many forced line breaks
        [[BODY_ES, break_lines(ES, 3)]],
        # hyphenated at a line end inside a word
        [[BODY_ES, hyphenate(ES, "exclusivamente", 6)]],
        # upper case and doubled spaces still count as the same text
        [[BODY_ES, ES.upper().replace(" ", "  ")]],
    ],
    ids=["exact", "line-breaks", "hyphenated", "case-and-spacing"],
)
def test_disclaimer_present_variants(tmp_path: Path, pages: list[list[Para]]) -> None:
    finding = _audit(tmp_path, pages)
    assert finding.rule == "disclaimer.present", finding
    assert finding.severity is Severity.INFO
    assert finding.page == 1
    assert finding.box is not None and finding.box.x0 == pytest.approx(72, abs=1)
    assert "presente" in finding.message and "present" in finding.message_en


def test_disclaimer_across_page_break_located_on_first_page(tmp_path: Path) -> None:
    words = ES.split()
    head, tail = " ".join(words[:9]), " ".join(words[9:])
    finding = _audit(tmp_path, [[BODY_ES, BODY_ES, head], [tail, BODY_ES]])
    assert finding.rule == "disclaimer.present", finding
    assert finding.page == 1
    # The box covers only the words on page 1: one line high, below the two body paragraphs.
    assert finding.box is not None and finding.box.y1 - finding.box.y0 < 20


def test_disclaimer_hyphenated_across_page_break_is_present(tmp_path: Path) -> None:
    words = ES.split()
    cut = words.index("exclusivamente")
    head = " ".join(words[:cut]) + " exclu-"
    tail = "sivamente " + " ".join(words[cut + 1 :])
    finding = _audit(tmp_path, [[BODY_ES, head], [tail]])
    assert finding.rule == "disclaimer.present", finding


def test_disclaimer_one_word_changed_is_altered_with_diff(tmp_path: Path) -> None:
    finding = _audit(tmp_path, [[BODY_ES, ES.replace("prohibida", "permitida")]])
    assert finding.rule == "disclaimer.altered"
    assert finding.severity is Severity.ERROR
    assert finding.page == 1 and finding.box is not None
    assert finding.expected == ES
    assert finding.actual is not None and "permitida" in finding.actual
    assert '"permitida" instead of "prohibida"' in finding.message_en
    assert "«permitida» en lugar de «prohibida»" in finding.message


def test_disclaimer_word_omitted_is_altered(tmp_path: Path) -> None:
    finding = _audit(tmp_path, [[BODY_ES, ES.replace(" previa", "")]])
    assert finding.rule == "disclaimer.altered"
    assert 'missing "previa"' in finding.message_en


def test_disclaimer_accent_dropped_is_altered(tmp_path: Path) -> None:
    finding = _audit(tmp_path, [[BODY_ES, ES.replace("está", "esta")]])
    assert finding.rule == "disclaimer.altered"
    assert '"esta" instead of "está"' in finding.message_en


def test_disclaimer_absent_is_missing(tmp_path: Path) -> None:
    finding = _audit(tmp_path, [[BODY_ES, BODY_ES], [BODY_ES]])
    assert finding.rule == "disclaimer.missing"
    assert finding.page is None and finding.box is None
    assert finding.message == "Falta el aviso obligatorio «confidentiality»."
    assert finding.message_en == "The required disclaimer 'confidentiality' is missing."


def test_disclaimer_english_document_uses_english_text(tmp_path: Path) -> None:
    finding = _audit(tmp_path, [[BODY_EN, EN]], language="en")
    assert finding.rule == "disclaimer.present"
    assert finding.message == finding.message_en


def test_disclaimer_on_rotated_cropped_page_box_in_displayed_points(tmp_path: Path) -> None:
    finding = _audit(tmp_path, [[BODY_ES, ES]], rotate=90)
    assert finding.rule == "disclaimer.present"
    assert finding.box is not None
    assert 60 < finding.box.x0 < 80 and finding.box.y1 < 842 - 72


def test_disclaimer_first_page_rule_found_later_is_wrong_page(tmp_path: Path) -> None:
    rule = RULE.model_copy(update={"pages": "first"})
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [[BODY_ES], [BODY_ES, ES]])
    (finding,) = audit_disclaimers(read_paragraphs(pdf), [rule], "es")
    assert finding.rule == "disclaimer.wrong_page"
    assert finding.page == 2


def test_clean_document_has_no_error_findings(tmp_path: Path) -> None:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [[BODY_ES, BODY_ES], [BODY_ES, ES]])
    findings = audit_disclaimers(read_paragraphs(pdf), [RULE], "es")
    assert [f.severity for f in findings] == [Severity.INFO]

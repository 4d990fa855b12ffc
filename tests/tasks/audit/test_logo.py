"""The logo auditor on real PDFs: logos pasted at known scales, rotations, colours and places."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.audit_models import AuditPolicy, LogoRule, Severity
from tasks.audit.logo import detect_logos, find_logo, logo_findings
from tasks.audit.logo_match import load_logo_ref
from tasks.audit.render import render_pages
from tests.audit_logogen import (
    LOGO_PNG,
    Placement,
    draw_logo,
    greyed,
    logo_pdf,
    recolour,
    reference_logo,
)

A4_W, A4_H = 595.28, 841.89


def _policy(pages: str = "first", **rule: object) -> AuditPolicy:
    settings: dict[str, object] = {
        "region": (0.0, 0.0, 1.0, 0.3),
        "width_fraction": (0.08, 0.5),
    } | rule
    return AuditPolicy(
        logos=[LogoRule(id="octavius", image=str(LOGO_PNG), pages=pages, **settings)]
    )


def _rules(tmp_path: Path, placements: list[Placement]) -> list[str]:
    pdf = logo_pdf(tmp_path / "logo.pdf", [placements])
    policy = _policy()
    return sorted(f.rule for f in logo_findings(detect_logos(pdf, [1], policy), policy, 1))


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        # the reference file itself: the exact embedded-image check
        (Placement(150, 780, 144), ["logo.present"]),
        # re-encoded as JPEG: found by features, at three sizes
        (Placement(150, 780, 144, jpeg=True), ["logo.present"]),
        (Placement(110, 790, 72, jpeg=True), ["logo.present"]),
        (Placement(250, 760, 280, jpeg=True), ["logo.present"]),
        # a small rotation within the 3° tolerance
        (Placement(150, 775, 144, rotation=2.0, jpeg=True), ["logo.present"]),
        # rotated beyond tolerance, by features and by the exact check
        (Placement(150, 765, 144, rotation=20.0, jpeg=True), ["logo.distorted"]),
        (Placement(150, 765, 144, rotation=180.0), ["logo.distorted"]),
        # stretched taller / squashed
        (Placement(150, 770, 144, stretch=1.3, jpeg=True), ["logo.distorted"]),
        (Placement(150, 780, 144, stretch=0.8), ["logo.distorted"]),
        # wrong colours: hue turned, or all grey
        (Placement(150, 780, 144, image=recolour(reference_logo(), 60)), ["logo.distorted"]),
        (Placement(150, 780, 144, image=greyed(reference_logo())), ["logo.distorted"]),
        # outside the expected top band, exact and re-encoded
        (Placement(300, 80, 144), ["logo.wrong_place"]),
        (Placement(450, 90, 144, jpeg=True), ["logo.wrong_place"]),
        # larger than half the page width
        (Placement(300, 740, 340, jpeg=True), ["logo.wrong_size"]),
        # look-alikes are not the logo
        (Placement(150, 780, 144, image=draw_logo(text="OCTOPUS")), ["logo.missing"]),
        (Placement(150, 780, 144, image=draw_logo(emblem="square")), ["logo.missing"]),
        (Placement(150, 780, 144, image=reference_logo()[:, ::-1].copy()), ["logo.missing"]),
    ],
)
def test_logo_findings_name_each_planted_defect(
    tmp_path: Path, placement: Placement, expected: list[str]
) -> None:
    assert _rules(tmp_path, [placement]) == expected


def test_logo_missing_on_a_page_without_logo(tmp_path: Path) -> None:
    assert _rules(tmp_path, []) == ["logo.missing"]


@pytest.mark.parametrize("jpeg", [False, True])
def test_logo_box_is_where_it_was_pasted(tmp_path: Path, jpeg: bool) -> None:
    placement = Placement(200, 760, 160, rotation=15.0, jpeg=jpeg)
    pdf = logo_pdf(tmp_path / "logo.pdf", [[placement]])
    [result] = detect_logos(pdf, [1], _policy())
    [found] = result.placements
    want = placement.box
    assert abs(found.box.x0 - want.x0) < 3 and abs(found.box.x1 - want.x1) < 3
    assert abs(found.box.y0 - want.y0) < 3 and abs(found.box.y1 - want.y1) < 3
    assert abs(found.rotation_deg - 15.0) < 1.0
    assert abs(found.width_pt - 160) < 4


def test_find_logo_finds_two_copies_on_one_page(tmp_path: Path) -> None:
    pdf = logo_pdf(
        tmp_path / "two.pdf",
        [[Placement(150, 780, 150, jpeg=True), Placement(420, 120, 150, rotation=90, jpeg=True)]],
    )
    [page] = render_pages(pdf, [1], dpi=100)
    hits = find_logo(page.image, load_logo_ref(LOGO_PNG))
    rotations = sorted(round(hit.rotation_deg) for hit in hits)
    assert len(hits) == 2 and abs(rotations[0]) <= 1 and abs(rotations[1] - 90) <= 1


def test_logo_rule_all_reports_missing_pages_in_one_finding(tmp_path: Path) -> None:
    good = [Placement(150, 780, 144)]
    pdf = logo_pdf(tmp_path / "all.pdf", [good, [], good, [], []], body=False)
    policy = _policy(pages="all")
    findings = logo_findings(detect_logos(pdf, [1, 2, 3, 4, 5], policy), policy, 5, language="es")
    missing = [f for f in findings if f.rule == "logo.missing"]
    assert len(missing) == 1 and missing[0].page == 2
    assert missing[0].message == "Falta el logotipo 'octavius' en la página 2, 4-5."
    assert missing[0].message_en == "Logo 'octavius' is missing on page 2, 4-5."
    assert missing[0].severity is Severity.ERROR
    assert [f.rule for f in findings if f.rule != "logo.missing"] == ["logo.present"]


def test_logo_rule_any_is_satisfied_by_a_later_page(tmp_path: Path) -> None:
    pdf = logo_pdf(tmp_path / "any.pdf", [[], [], [Placement(150, 780, 144)]], body=False)
    policy = _policy(pages="any")
    findings = logo_findings(detect_logos(pdf, [1, 2, 3], policy), policy, 3)
    assert [(f.rule, f.page) for f in findings] == [("logo.present", 3)]
    nothing = logo_pdf(tmp_path / "none.pdf", [[], []], body=False)
    findings = logo_findings(detect_logos(nothing, [1, 2], policy), policy, 2)
    assert [(f.rule, f.page) for f in findings] == [("logo.missing", None)]


def test_logo_on_a_rotated_page_is_boxed_as_displayed(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    placement = Placement(150, 780, 144, jpeg=True)
    source = logo_pdf(tmp_path / "upright.pdf", [[placement]])
    writer = PdfWriter()
    page = PdfReader(source).pages[0]
    page.rotate(90)
    writer.add_page(page)
    rotated = tmp_path / "rotated.pdf"
    writer.write(rotated)
    [result] = detect_logos(rotated, [1], _policy(region=None, width_fraction=None))
    [found] = result.placements
    # A page turned clockwise: user (x, y) shows at (y, width - x).
    assert (result.width, result.height) == pytest.approx((A4_H, A4_W), abs=0.01)
    assert abs(found.box.x0 - placement.box.y0) < 3
    assert abs(found.box.y1 - (A4_W - placement.box.x0)) < 3
    assert abs(found.rotation_deg + 90) < 1.5


def test_detect_logos_gives_the_same_results_from_two_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pages = [[Placement(150, 780, 144, jpeg=True)], [Placement(300, 80, 144)], []]
    pdf = logo_pdf(tmp_path / "threads.pdf", pages)
    policy = _policy(pages="all")
    alone = detect_logos(pdf, [1, 2, 3], policy)
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda _: detect_logos(pdf, [1, 2, 3], policy), range(2)))
    assert together == [alone, alone]
    assert [len(result.placements) for result in alone] == [1, 1, 0]

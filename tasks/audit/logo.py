"""The logo auditor: logos located on batches of pages, then judged against the policy's rules."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel, Field

from core.audit_models import Auditor, AuditPolicy, Box, Finding, LogoRule, Severity
from core.storage import local_file
from tasks.audit.logo_match import (
    LogoHit,
    LogoRef,
    PageFeatures,
    find_logo,
    load_logo_ref,
    page_features,
)
from tasks.audit.policy import policy_hash
from tasks.audit.render import EmbeddedImage, RenderedPage, render_pages
from tasks.parsing import file_sha256

__all__ = [
    "LOGO_DPI",
    "LogoHit",
    "LogoPageResult",
    "LogoPlacement",
    "LogoRef",
    "detect_logos",
    "find_logo",
    "logo_findings",
    "logo_pages_task",
    "placement_problems",
]

# Bump when a change in detection must re-audit unchanged files.
LOGO_VERSION = "1"
LOGO_DPI = 100.0
"""Rendering resolution for matching: a 1-inch logo is 100 pixels wide."""
_INSIDE_REGION = 0.9


class LogoPlacement(BaseModel):
    """One logo found on a page, measured in displayed-page points."""

    logo: str = Field(description="Id of the LogoRule whose image this is.")
    box: Box
    method: Literal["embedded", "features"]
    width_pt: float = Field(description="Width along the logo's own axis, in points.")
    rotation_deg: float = Field(description="Counter-clockwise rotation on the page.")
    aspect_distortion: float = Field(description="Relative change of width/height; 0 is exact.")
    skew_deg: float = 0.0
    aspect_resolution: float = Field(
        default=0.0,
        description="Aspect change the rendering alone can cause (one pixel per side); "
        "0 for an embedded image measured from its matrix.",
    )
    mirrored: bool = False
    color_distance: float = Field(description="Mean CIELAB ΔE against the reference.")
    similarity: float = Field(default=1.0, description="Shape agreement in the worst grid cell.")
    inliers: int = 0


class LogoPageResult(BaseModel):
    """What the logo auditor saw on one page."""

    page: int = Field(ge=1)
    width: float = Field(description="Displayed page width in points.")
    height: float = Field(description="Displayed page height in points.")
    placements: list[LogoPlacement] = Field(default_factory=list)


def detect_logos(
    pdf: Path, pages: list[int], policy: AuditPolicy, *, dpi: float = LOGO_DPI
) -> list[LogoPageResult]:
    """Every policy logo located on the given pages (1-based), one rendered page at a time."""
    refs = [(rule, load_logo_ref(Path(rule.image))) for rule in policy.logos]
    sizes = {ref.size_px for _, ref in refs}
    results = []
    for rendered in render_pages(pdf, pages, dpi=dpi, digest_sizes=lambda w, h: (w, h) in sizes):
        features: PageFeatures | None = None
        placements: list[LogoPlacement] = []
        for rule, ref in refs:
            exact = [image for image in rendered.images if image.digest == ref.digest]
            if exact:
                placements.extend(_from_image(rule.id, image, rendered) for image in exact)
                continue
            features = features or page_features(rendered.image)
            hits = find_logo(rendered.image, ref, features=features)
            placements.extend(_from_hit(rule.id, hit, rendered) for hit in hits)
        width, height = rendered.size
        results.append(
            LogoPageResult(page=rendered.number, width=width, height=height, placements=placements)
        )
    return results


def _from_hit(logo: str, hit: LogoHit, page: RenderedPage) -> LogoPlacement:
    """A feature match in page points."""
    top_left, top_right, _, bottom_left = hit.corners
    width_px, height_px = math.dist(top_left, top_right), math.dist(top_left, bottom_left)
    width = width_px / page.scale
    return LogoPlacement(
        logo=logo,
        box=page.box(hit.corners),
        method="features",
        width_pt=round(width, 2),
        rotation_deg=round(hit.rotation_deg, 2),
        aspect_distortion=round(hit.aspect_distortion, 4),
        skew_deg=round(hit.skew_deg, 2),
        # Rendering snaps the logo's edges to whole pixels.
        aspect_resolution=round(1.0 / max(width_px, 1.0) + 1.0 / max(height_px, 1.0), 4),
        color_distance=round(hit.color_distance, 2),
        similarity=round(hit.similarity, 3),
        inliers=hit.inliers,
    )


def _from_image(logo: str, image: EmbeddedImage, page: RenderedPage) -> LogoPlacement:
    """An embedded copy of the reference's exact pixels, measured from its placement matrix."""
    width, height = image.placed_size
    (ax, ay), (bx, by), _, (dx, dy) = image.corners
    cos_axes = ((bx - ax) * (dx - ax) + (by - ay) * (dy - ay)) / max(width * height, 1e-9)
    aspect = (width / max(height, 1e-9)) / (image.width_px / image.height_px) - 1.0
    width_pt, height_pt = page.size
    box = image.box
    clipped = Box(
        x0=min(max(box.x0, 0.0), width_pt),
        y0=min(max(box.y0, 0.0), height_pt),
        x1=min(max(box.x1, 0.0), width_pt),
        y1=min(max(box.y1, 0.0), height_pt),
    )
    return LogoPlacement(
        logo=logo,
        box=clipped,
        method="embedded",
        width_pt=round(width, 2),
        rotation_deg=round(image.rotation_deg, 2),
        aspect_distortion=round(aspect, 4),
        skew_deg=round(math.degrees(math.asin(max(-1.0, min(1.0, cos_axes)))), 2),
        mirrored=image.mirrored,
        color_distance=0.0,
    )


def _pages_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: file content, policy content (logo images included), pages and code version."""
    key = (
        f"logo|{parameters.get('tenant', '')}|{file_sha256(Path(parameters['pdf_path']))}|"
        f"{policy_hash(parameters['policy'])}|{','.join(map(str, parameters['pages']))}|"
        f"{LOGO_DPI}|{LOGO_VERSION}"
    )
    return hashlib.sha256(key.encode()).hexdigest()


@task(
    name="audit-logo-pages",
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_pages_key),
    task_run_name="logo pages {pages}",
)
def logo_pages_task(
    pdf_path: str, pages: list[int], policy: AuditPolicy, tenant: str = ""
) -> list[LogoPageResult]:
    """Locates the policy's logos on one batch of pages; cached on content, policy and code."""
    with local_file(pdf_path) as pdf:
        return detect_logos(pdf, pages, policy)


def logo_findings(
    results: list[LogoPageResult],
    policy: AuditPolicy,
    page_count: int,
    *,
    language: str = "en",
) -> list[Finding]:
    """Findings per logo rule: present, missing (one finding), distorted, wrong size or place."""
    by_page = {result.page: result for result in results}
    findings: list[Finding] = []
    for rule in policy.logos:
        if rule.pages == "first":
            pages = [1] if 1 in by_page else []
        elif rule.pages == "all":
            pages = [p for p in range(1, page_count + 1) if p in by_page]
        else:
            pages = sorted(by_page)
        found = [
            (by_page[p], placement)
            for p in pages
            for placement in by_page[p].placements
            if placement.logo == rule.id
        ]
        missing_pages = [p for p in pages if not any(r.page == p for r, _ in found)]
        if rule.pages == "any":
            missing_pages = [] if found else pages[:1]
        if rule.pages == "first" and not pages:
            missing_pages = [1]
        if missing_pages:
            findings.append(_missing(rule, missing_pages, rule.pages == "any", language))
        good: list[tuple[LogoPageResult, LogoPlacement]] = []
        for page, placement in found:
            problems = _judge(rule, placement, page)
            if not problems:
                good.append((page, placement))
            findings.extend(_problem(rule, placement, page.page, kind, problems[kind], language)
                            for kind in problems)  # fmt: skip
        if good:
            findings.append(_present(rule, good, language))
    return findings


def placement_problems(rule: LogoRule, placement: LogoPlacement, page: LogoPageResult) -> list[str]:
    """The finding kinds (distorted, wrong_size, wrong_place) a placement earns under a rule."""
    return list(_judge(rule, placement, page))


_Problems = dict[str, tuple[str, str, str, str]]
"""Finding kind → (actual in Spanish, actual in English, expected in Spanish, in English)."""


def _judge(rule: LogoRule, placement: LogoPlacement, page: LogoPageResult) -> _Problems:
    """What is wrong with one placement under the rule, keyed by finding kind."""
    problems: _Problems = {}
    es: list[str] = []
    en: list[str] = []
    rotation = (placement.rotation_deg + 180.0) % 360.0 - 180.0
    if abs(rotation) > rule.max_rotation_deg:
        es.append(f"girado {rotation:.1f}°")
        en.append(f"rotated {rotation:.1f}°")
    allowed = rule.max_aspect_distortion + placement.aspect_resolution
    stretched = abs(placement.aspect_distortion) > allowed
    if stretched or abs(placement.skew_deg) > max(3.0, rule.max_rotation_deg):
        change = placement.aspect_distortion * 100
        es.append(f"deformado (proporción {change:+.0f} %, sesgo {placement.skew_deg:.1f}°)")
        en.append(f"stretched (aspect {change:+.0f}%, skew {placement.skew_deg:.1f}°)")
    if placement.mirrored:
        es.append("reflejado")
        en.append("mirrored")
    if placement.color_distance > rule.max_color_distance:
        es.append(f"colores alterados (ΔE {placement.color_distance:.0f})")
        en.append(f"wrong colours (ΔE {placement.color_distance:.0f})")
    if es:
        problems["distorted"] = (
            "; ".join(es),
            "; ".join(en),
            f"giro ≤ {rule.max_rotation_deg:g}°, proporción ±{rule.max_aspect_distortion:.0%}, "
            f"ΔE ≤ {rule.max_color_distance:g}",
            f"rotation ≤ {rule.max_rotation_deg:g}°, aspect ±{rule.max_aspect_distortion:.0%}, "
            f"ΔE ≤ {rule.max_color_distance:g}",
        )
    if rule.width_fraction is not None:
        fraction = placement.width_pt / page.width
        low, high = rule.width_fraction
        if not low <= fraction <= high:
            problems["wrong_size"] = (
                f"ancho {fraction:.0%} de la página",
                f"width {fraction:.0%} of the page",
                f"entre {low:.0%} y {high:.0%} del ancho",
                f"between {low:.0%} and {high:.0%} of the width",
            )
    if rule.region is not None:
        region = region_box(rule.region, page.width, page.height)
        if _inside_fraction(placement.box, region) < _INSIDE_REGION:
            where = _box_text(region)
            problems["wrong_place"] = (
                f"en {_box_text(placement.box)}",
                f"at {_box_text(placement.box)}",
                f"dentro de {where}",
                f"inside {where}",
            )
    return problems


def region_box(region: tuple[float, float, float, float], width: float, height: float) -> Box:
    """A rule's region (page fractions, origin top-left) as a displayed-page box in points."""
    x0, y0, x1, y1 = region
    return Box(x0=x0 * width, y0=height * (1 - y1), x1=x1 * width, y1=height * (1 - y0))


def _inside_fraction(box: Box, region: Box) -> float:
    """The share of the box's area that lies inside the region."""
    area = (box.x1 - box.x0) * (box.y1 - box.y0)
    overlap_w = max(0.0, min(box.x1, region.x1) - max(box.x0, region.x0))
    overlap_h = max(0.0, min(box.y1, region.y1) - max(box.y0, region.y0))
    return overlap_w * overlap_h / area if area > 0 else 0.0


def _box_text(box: Box) -> str:
    return f"({box.x0:.0f}, {box.y0:.0f})-({box.x1:.0f}, {box.y1:.0f}) pt"


def _page_list(pages: list[int]) -> str:
    """Pages as ranges: 3, 5-7."""
    runs: list[list[int]] = []
    for page in pages:
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _missing(rule: LogoRule, pages: list[int], anywhere: bool, language: str) -> Finding:
    if anywhere:
        es = f"Falta el logotipo '{rule.id}': no aparece en ninguna página."
        en = f"Logo '{rule.id}' is missing: it is on no page."
    else:
        listed = _page_list(pages)
        es = f"Falta el logotipo '{rule.id}' en la página {listed}."
        en = f"Logo '{rule.id}' is missing on page {listed}."
    return Finding(
        auditor=Auditor.LOGO,
        rule="logo.missing",
        severity=rule.severity,
        page=None if anywhere else pages[0],
        message=es if language == "es" else en,
        message_en=en,
        expected=f"logo '{rule.id}' ({rule.pages} pages)",
        actual="not found" if anywhere else f"not found on page {_page_list(pages)}",
        suggestion="Add the reference logo." if language != "es" else "Añada el logotipo.",
    )


_SUGGESTIONS = {
    "distorted": ("Use el logotipo original sin deformarlo, girarlo ni recolorearlo.",
                  "Use the original logo without stretching, rotating or recolouring it."),
    "wrong_size": ("Ajuste el tamaño del logotipo.", "Resize the logo."),
    "wrong_place": ("Coloque el logotipo en la zona prevista.",
                    "Move the logo into its expected area."),
}  # fmt: skip
_TITLES = {
    "distorted": ("está alterado", "is distorted"),
    "wrong_size": ("tiene un tamaño incorrecto", "has the wrong size"),
    "wrong_place": ("está fuera de su lugar", "is in the wrong place"),
}


def _problem(
    rule: LogoRule,
    placement: LogoPlacement,
    page: int,
    kind: str,
    detail: tuple[str, str, str, str],
    language: str,
) -> Finding:
    actual_es, actual_en, expected_es, expected_en = detail
    title_es, title_en = _TITLES[kind]
    es = f"El logotipo '{rule.id}' {title_es} (página {page}): {actual_es}."
    en = f"Logo '{rule.id}' {title_en} (page {page}): {actual_en}."
    spanish = language == "es"
    return Finding(
        auditor=Auditor.LOGO,
        rule=f"logo.{kind}",
        severity=rule.severity,
        page=page,
        box=placement.box,
        message=es if spanish else en,
        message_en=en,
        expected=expected_es if spanish else expected_en,
        actual=actual_es if spanish else actual_en,
        suggestion=_SUGGESTIONS[kind][0 if spanish else 1],
    )


def _present(
    rule: LogoRule, good: list[tuple[LogoPageResult, LogoPlacement]], language: str
) -> Finding:
    pages = sorted({page.page for page, _ in good})
    listed = _page_list(pages)
    first = good[0][1]
    es = f"El logotipo '{rule.id}' está presente y correcto (página {listed})."
    en = f"Logo '{rule.id}' is present and correct (page {listed})."
    return Finding(
        auditor=Auditor.LOGO,
        rule="logo.present",
        severity=Severity.INFO,
        page=pages[0],
        box=first.box,
        message=es if language == "es" else en,
        message_en=en,
        actual=f"{first.method} match, width {first.width_pt:.0f} pt",
    )

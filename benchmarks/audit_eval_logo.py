"""Logo auditor on a generated, labelled set: precision, recall, confusion counts and pages/s.

Run: .venv/bin/python benchmarks/audit_eval_logo.py [--seed N] [--keep DIR]

Builds one PDF whose every page is a labelled case: the reference logo present (scales 50-260 pt,
rotations within the 3° tolerance, exact PNG or re-encoded as JPEG, slightly blurred or
brightened), distorted (rotated, stretched, recoloured), in the wrong place (bottom of the page),
missing, or a similar-but-different look-alike (other words, other emblem, mirrored, the emblem
or the wordmark alone). Each page is judged under one logo rule (top 30 % of the page, width
8-50 % of the page) and the predicted class compared with the label. Targets: precision >= 0.99
and recall >= 0.95 for finding the reference logo (located within IoU 0.5 of where it was pasted).
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

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.audit_models import AuditPolicy, Box, LogoRule  # noqa: E402
from tasks.audit.logo import LogoPageResult, detect_logos, placement_problems  # noqa: E402
from tests.audit_logogen import (  # noqa: E402
    LOGO_PNG,
    Placement,
    draw_logo,
    greyed,
    logo_pdf,
    recolour,
    reference_logo,
)

CLASSES = ("present", "distorted", "wrong_place", "missing")
TARGET_PRECISION, TARGET_RECALL = 0.99, 0.95
PAGE_W, PAGE_H = 595.28, 841.89


@dataclass
class Case:
    """One page of the set: what is pasted and what the auditor should say."""

    kind: str
    """Generator family, for the per-kind breakdown."""
    label: str
    placement: Placement | None
    """None: nothing of the reference logo (or only a look-alike in `distractor`)."""
    distractor: Placement | None = None


def _blurred(image: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.GaussianBlur(image, (3, 3), 0.8))


def _brightened(image: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(np.clip(image.astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8))


def _header(rng: random.Random, width: float, rotation: float = 0.0) -> tuple[float, float]:
    """A centre in the top band that keeps a logo of this width (rotated) on the page."""
    height = width * 0.4
    reach = abs(width * np.cos(np.radians(rotation))) + abs(height * np.sin(np.radians(rotation)))
    reach_y = abs(width * np.sin(np.radians(rotation))) + abs(height * np.cos(np.radians(rotation)))
    cx = rng.uniform(36 + reach / 2, PAGE_W - 36 - reach / 2)
    cy = rng.uniform(PAGE_H * 0.72 + reach_y / 2, PAGE_H - 20 - reach_y / 2)
    return cx, cy


def build_cases(seed: int) -> list[Case]:
    """The labelled cases, in a fixed order for a given seed."""
    rng = random.Random(seed)
    ref = reference_logo()
    cases: list[Case] = []

    def pixels_variant(i: int) -> tuple[np.ndarray | None, bool]:
        """Exact PNG, JPEG, blurred or brightened pixels, in turn."""
        return [
            (None, False),
            (None, True),
            (_blurred(ref), True),
            (_brightened(ref, 1.06), False),
        ][i % 4]

    for i in range(44):
        width = rng.uniform(50, 260)
        rotation = rng.uniform(-2.5, 2.5)
        image, jpeg = pixels_variant(i)
        cx, cy = _header(rng, width, rotation)
        cases.append(
            Case("present", "present", Placement(cx, cy, width, rotation, 1.0, image, jpeg))
        )
    for i in range(16):
        width = rng.uniform(90, 220)
        rotation = rng.choice([-1, 1]) * rng.uniform(8, 180)
        image, jpeg = pixels_variant(i)
        cx, cy = _header(rng, width, rotation)
        cases.append(
            Case("rotated", "distorted", Placement(cx, cy, width, rotation, 1.0, image, jpeg))
        )
    for i in range(16):
        width = rng.uniform(90, 220)
        stretch = rng.choice([rng.uniform(0.65, 0.88), rng.uniform(1.14, 1.5)])
        image, jpeg = pixels_variant(i)
        cx, cy = _header(rng, width)
        cases.append(
            Case("stretched", "distorted", Placement(cx, cy, width, 0.0, stretch, image, jpeg))
        )
    recolourings = [lambda: recolour(ref, rng.randint(35, 145)), lambda: greyed(ref)]
    for i in range(16):
        width = rng.uniform(90, 220)
        cx, cy = _header(rng, width)
        image = recolourings[i % 5 == 4]()
        cases.append(
            Case("recoloured", "distorted", Placement(cx, cy, width, 0.0, 1.0, image, i % 2 == 1))
        )
    for i in range(16):
        width = rng.uniform(80, 200)
        image, jpeg = pixels_variant(i)
        cx = rng.uniform(40 + width / 2, PAGE_W - 40 - width / 2)
        cy = rng.uniform(40 + width * 0.2, PAGE_H * 0.22 - width * 0.2)
        cases.append(
            Case("wrong_place", "wrong_place", Placement(cx, cy, width, 0.0, 1.0, image, jpeg))
        )
    for _ in range(12):
        cases.append(Case("missing", "missing", None))
    lookalikes = [
        lambda: draw_logo(text="OCTOPUS"),
        lambda: draw_logo(text="OCTAVIO"),
        lambda: draw_logo(emblem="square"),
        lambda: draw_logo(sub="pipes and co"),
        lambda: ref[:, ::-1].copy(),
        lambda: draw_logo(text="ACTIVIUS", emblem="square"),
        lambda: ref[:, :165].copy(),
        lambda: ref[:, 160:].copy(),
    ]
    for i in range(24):
        width = rng.uniform(90, 220)
        cx, cy = _header(rng, width)
        image = lookalikes[i % len(lookalikes)]()
        cases.append(
            Case(
                "lookalike", "missing", None, Placement(cx, cy, width, 0.0, 1.0, image, i % 2 == 1)
            )
        )
    return cases


def _iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    h = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = w * h
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def predicted_class(result: LogoPageResult, rule: LogoRule) -> str:
    """The auditor's verdict on one page: the worst placement's problem, or missing."""
    if not result.placements:
        return "missing"
    kinds = {kind for p in result.placements for kind in placement_problems(rule, p, result)}
    if "distorted" in kinds:
        return "distorted"
    if "wrong_place" in kinds:
        return "wrong_place"
    return "present" if not kinds else "distorted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="write the PDF into this folder")
    args = parser.parse_args()
    cases = build_cases(args.seed)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="octavius-logo-eval-"))
    folder.mkdir(parents=True, exist_ok=True)
    pdf = logo_pdf(
        folder / "logo-eval.pdf",
        [[p for p in (case.placement, case.distractor) if p is not None] for case in cases],
        seed=args.seed,
    )
    rule = LogoRule(
        id="octavius", image=str(LOGO_PNG), pages="all", region=(0.0, 0.0, 1.0, 0.3),
        width_fraction=(0.08, 0.5),
    )  # fmt: skip
    policy = AuditPolicy(logos=[rule])
    detect_logos(pdf, [1], policy)  # warm-up: reference features, imports
    started, cpu_started = time.perf_counter(), time.process_time()
    results = detect_logos(pdf, list(range(1, len(cases) + 1)), policy)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    confusion: Counter[tuple[str, str]] = Counter()
    per_kind: Counter[tuple[str, bool]] = Counter()
    tp = fp = fn = 0
    errors: list[str] = []
    for number, (case, result) in enumerate(zip(cases, results, strict=True), start=1):
        predicted = predicted_class(result, rule)
        confusion[(case.label, predicted)] += 1
        per_kind[(case.kind, predicted == case.label)] += 1
        truth = case.placement.box if case.placement is not None else None
        matched = False
        for placement in result.placements:
            if truth is not None and not matched and _iou(placement.box, truth) >= 0.5:
                matched = True
                tp += 1
            else:
                fp += 1
        if truth is not None and not matched:
            fn += 1
        if predicted != case.label:
            found = [
                f"{p.method} w={p.width_pt:.0f} rot={p.rotation_deg:.1f} "
                f"asp={p.aspect_distortion:+.3f} dE={p.color_distance:.0f} "
                f"sim={p.similarity:.2f} inl={p.inliers}"
                for p in result.placements
            ]
            errors.append(f"  page {number} {case.kind}: {case.label} -> {predicted} {found}")

    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    correct = sum(n for (label, predicted), n in confusion.items() if label == predicted)
    flagged = Counter(
        (label != "present", said != "present") for (label, said) in confusion.elements()
    )
    defect_tp, defect_fp, defect_fn = (
        flagged[(True, True)],
        flagged[(False, True)],
        flagged[(True, False)],
    )
    features_pages = sum(
        1 for r in results if not any(p.method == "embedded" for p in r.placements)
    )
    print(f"logo eval: {len(cases)} cases (seed {args.seed}), PDF {pdf}")
    print(
        f"locating the reference logo: precision {precision:.3f} recall {recall:.3f} "
        f"(tp {tp}, fp {fp}, fn {fn}; targets {TARGET_PRECISION} / {TARGET_RECALL})"
    )
    print(
        f"verdict per page: accuracy {correct / len(cases):.3f}; defect flagged: precision "
        f"{defect_tp / max(1, defect_tp + defect_fp):.3f} recall "
        f"{defect_tp / max(1, defect_tp + defect_fn):.3f}"
    )
    print("confusion (rows: label, columns: predicted):")
    print(f"  {'':12s}" + "".join(f"{c:>12s}" for c in CLASSES))
    for label in CLASSES:
        print(f"  {label:12s}" + "".join(f"{confusion[(label, c)]:>12d}" for c in CLASSES))
    print("per kind (correct/total):")
    for kind in dict.fromkeys(case.kind for case in cases):
        good, bad = per_kind[(kind, True)], per_kind[(kind, False)]
        print(f"  {kind:12s} {good}/{good + bad}")
    print(
        f"speed: {len(cases)} pages in {elapsed:.1f} s = {len(cases) / elapsed:.2f} pages/s in one "
        f"process, {cpu:.1f} s of CPU ({len(cases) / cpu:.2f} pages per CPU-second); "
        f"{features_pages} pages needed feature matching, the rest were exact embedded images"
    )
    if errors:
        print("misjudged pages:")
        print("\n".join(errors))


if __name__ == "__main__":
    main()

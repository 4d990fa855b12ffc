"""Find a reference logo on a rendered page: SIFT features, pose votes, affine fit, verification."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from tasks.audit.render import pixel_digest

__all__ = ["LogoHit", "LogoRef", "PageFeatures", "find_logo", "load_logo_ref", "page_features"]

# Longest side of the reference as matched; larger references are scaled down first.
_REF_MAX_SIDE = 600
_RATIO = 0.75
_RANSAC_PX = 3.0
_MIN_INLIERS = 10
_MAX_INSTANCES = 4
# Pose voting: bins of a factor 2 in scale, 30° in rotation, 1/4 of the logo's size in place.
_SCALE_BIN = 1.0
_TURN_BIN_DEG = 30.0
_TURN_BINS = 12
_PLACE_BIN = 0.25
_MIN_GROUP = 5
_MAX_GROUPS = 12
_MIN_SIDE_PX = 24
_MAX_ANISOTROPY = 3.0
_MAX_SKEW_DEG = 30.0
# Sub-pixel alignment: templates at least this wide; refinements that score lower or move a
# corner further (as a share of the logo's size) are dropped.
_MIN_TEMPLATE_PX = 64
_ECC_ITERATIONS = 60
_ECC_MIN_SCORE = 0.5
_ECC_MAX_SHIFT = 0.08
# Ink: a pixel this far (CIELAB ΔE) from the background belongs to the logo.
_INK_DELTA_E = 20.0
_GRID = (3, 6)
_MIN_CELL_INK = 0.01
MIN_SIMILARITY = 0.96
"""Worst grid cell's agreement of the logo's shapes below which a match is not this logo."""


_LOCAL = threading.local()


@dataclass(frozen=True)
class LogoRef:
    """A reference logo prepared for matching: pixels, ink mask, colours and features."""

    image: np.ndarray
    """BGR pixels on white, at matching size."""
    digest: str
    """pixel_digest of the image file's own pixels (before resizing), for exact comparison."""
    size_px: tuple[int, int]
    """Width and height of the image file in pixels."""
    frames: np.ndarray
    """SIFT keypoints as rows of x, y, size, angle (degrees, image coordinates)."""
    descriptors: np.ndarray
    lab: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class PageFeatures:
    """SIFT keypoints (rows of x, y, size, angle) and descriptors of a page."""

    frames: np.ndarray
    descriptors: np.ndarray | None


@dataclass(frozen=True)
class LogoHit:
    """One place a logo was found on a page image, measured against the reference."""

    corners: np.ndarray
    """Page pixel positions of the reference's top-left, top-right, bottom-right, bottom-left."""
    inliers: int
    similarity: float
    """Agreement of shapes in the worst grid cell, 0..1."""
    rotation_deg: float
    """Counter-clockwise rotation of the logo on the page."""
    aspect_distortion: float
    """Relative change of width/height against the reference (0 for an undistorted logo)."""
    skew_deg: float
    color_distance: float
    """Mean CIELAB ΔE between the logo's ink on the page and the reference."""


def load_logo_ref(path: Path) -> LogoRef:
    """The prepared reference for an image file (PNG or JPEG; transparency laid on white)."""
    resolved = path.resolve()
    stat = resolved.stat()
    return _cached_ref(str(resolved), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _cached_ref(path: str, mtime_ns: int, size: int) -> LogoRef:
    """The reference of one file version, prepared once per process."""
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise ValueError(f"logo image {path} is not a readable image")
    return prepare_ref(raw)


def prepare_ref(raw: np.ndarray) -> LogoRef:
    """A reference from decoded pixels (grey, BGR or BGRA)."""
    image = _on_white(raw)
    digest = pixel_digest(image)
    height, width = image.shape[:2]
    factor = min(1.0, _REF_MAX_SIDE / max(height, width))
    work = (
        cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        if factor < 1.0
        else image
    )
    lab = _lab(work)
    mask = _ink(lab, _background(lab, None))
    features = page_features(work)
    if features.descriptors is None or len(features.frames) < _MIN_INLIERS:
        raise ValueError("logo image has too little detail to be recognised")
    return LogoRef(
        image=work,
        digest=digest,
        size_px=(width, height),
        frames=features.frames,
        descriptors=features.descriptors,
        lab=lab,
        mask=mask,
    )


def page_features(image: np.ndarray) -> PageFeatures:
    """SIFT features of an image's ink (darkness of its darkest channel), blind to hue."""
    ink = 255 - image.min(axis=2) if image.ndim == 3 else 255 - image
    keypoints, descriptors = _sift().detectAndCompute(np.ascontiguousarray(ink), None)
    frames = np.array(
        [(kp.pt[0], kp.pt[1], kp.size, kp.angle) for kp in keypoints], dtype=np.float32
    ).reshape(-1, 4)
    return PageFeatures(frames=frames, descriptors=descriptors)


def _sift() -> cv2.SIFT:
    """This thread's SIFT detector (OpenCV objects are not shared across threads)."""
    detector: cv2.SIFT | None = getattr(_LOCAL, "sift", None)
    if detector is None:
        detector = _LOCAL.sift = cv2.SIFT.create()
    return detector


def _matcher() -> cv2.BFMatcher:
    """This thread's brute-force L2 matcher."""
    matcher: cv2.BFMatcher | None = getattr(_LOCAL, "matcher", None)
    if matcher is None:
        matcher = _LOCAL.matcher = cv2.BFMatcher(cv2.NORM_L2)
    return matcher


def find_logo(
    page: np.ndarray, ref: LogoRef, *, features: PageFeatures | None = None
) -> list[LogoHit]:
    """Every verified occurrence of the reference on a BGR page image, best first."""
    features = features or page_features(page)
    if features.descriptors is None or len(features.frames) < _MIN_INLIERS:
        return []
    # Page to reference, so that several copies of the logo each keep their matches.
    pairs = _matcher().knnMatch(features.descriptors, ref.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
    if len(good) < _MIN_INLIERS:
        return []
    ref_ids = np.array([m.trainIdx for m in good])
    src_frames = ref.frames[ref_ids]
    dst_frames = features.frames[[m.queryIdx for m in good]]
    src, dst = src_frames[:, :2], dst_frames[:, :2]
    height, width = ref.image.shape[:2]
    used = np.zeros(len(good), dtype=bool)
    hits: list[LogoHit] = []
    for members in _pose_groups(src_frames, dst_frames, ref_ids, width, height)[:_MAX_GROUPS]:
        members = members[~used[members]]
        if len(members) < _MIN_GROUP:
            continue
        homography = _homography(src[members], dst[members])
        if homography is None:
            continue
        # Every match the pose explains, not only those that voted for its bin.
        projected = cv2.perspectiveTransform(src.reshape(-1, 1, 2), homography).reshape(-1, 2)
        agree = np.linalg.norm(projected - dst, axis=1) < _RANSAC_PX
        consistent = np.flatnonzero(agree & ~used)
        if len(consistent) < _MIN_INLIERS:
            continue
        homography, inliers = _refine(src, dst, consistent)
        if homography is None or len(inliers) < _MIN_INLIERS:
            continue
        used[inliers] = True
        hit = _verify(page, ref, homography, len(inliers))
        if hit is None:
            continue
        hits.append(hit)
        quad = hit.corners.reshape(-1, 1, 2).astype(np.float32)
        for i in np.flatnonzero(~used):
            if cv2.pointPolygonTest(quad, (float(dst[i, 0]), float(dst[i, 1])), False) >= 0:
                used[i] = True
        if len(hits) == _MAX_INSTANCES:
            break
    hits.sort(key=lambda h: (-h.similarity, -h.inliers))
    return hits


def _pose_groups(
    src: np.ndarray, dst: np.ndarray, ref_ids: np.ndarray, width: int, height: int
) -> list[np.ndarray]:
    """Matches grouped by the logo pose each implies (Hough votes), most telling group first.

    Each match's keypoint scale, angle and position predict where the reference's centre lands,
    at what scale and rotation; true matches of one copy agree, clutter scatters. Every match
    votes for the two nearest bins in each dimension. Groups rank by how many distinct reference
    keypoints they hold: clutter (body text) piles many page keypoints onto a few reference ones.
    """
    scale = np.maximum(dst[:, 2], 1e-3) / np.maximum(src[:, 2], 1e-3)
    turn = np.radians(dst[:, 3] - src[:, 3])
    offset_x, offset_y = width / 2 - src[:, 0], height / 2 - src[:, 1]
    cos, sin = np.cos(turn), np.sin(turn)
    centre_x = dst[:, 0] + scale * (cos * offset_x - sin * offset_y)
    centre_y = dst[:, 1] + scale * (sin * offset_x + cos * offset_y)
    scale_bin = np.log2(scale) / _SCALE_BIN - 0.5
    turn_bin = np.degrees(turn) % 360.0 / _TURN_BIN_DEG - 0.5
    votes: dict[tuple[int, int, int, int], list[int]] = {}
    side = max(width, height)
    for i in range(len(src)):
        for s in (math.floor(scale_bin[i]), math.floor(scale_bin[i]) + 1):
            cell = _PLACE_BIN * side * 2.0 ** ((s + 0.5) * _SCALE_BIN)
            x_bin, y_bin = centre_x[i] / cell - 0.5, centre_y[i] / cell - 0.5
            for t in (math.floor(turn_bin[i]), math.floor(turn_bin[i]) + 1):
                for x in (math.floor(x_bin), math.floor(x_bin) + 1):
                    for y in (math.floor(y_bin), math.floor(y_bin) + 1):
                        votes.setdefault((s, t % _TURN_BINS, x, y), []).append(i)
    unique = {tuple(members) for members in votes.values() if len(members) >= _MIN_GROUP}
    ranked = sorted(
        ((len(set(ref_ids[list(m)].tolist())), len(m), m) for m in unique), reverse=True
    )
    return [np.array(m) for distinct, _, m in ranked if distinct >= _MIN_GROUP]


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """A RANSAC fit of a pose group, or None when too few points agree."""
    homography, mask = _fit(src, dst)
    if homography is None or int(mask.sum()) < _MIN_GROUP:
        return None
    return homography


def _fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """An affine map (as a 3x3 homography) from RANSAC and refinement, and its inlier mask.

    A PDF places images with affine matrices, so the two extra perspective terms of a full
    homography would only soak up keypoint noise and bias the measured stretch.
    """
    affine, mask = cv2.estimateAffine2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PX, refineIters=20
    )
    if affine is None or mask is None:
        return None, np.zeros(len(src), dtype=bool)
    return np.vstack([affine, [0.0, 0.0, 1.0]]), mask.ravel().astype(bool)


def _refine(
    src: np.ndarray, dst: np.ndarray, consistent: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """The homography fitted to every consistent match, and the indices of its inliers."""
    homography, mask = _fit(src[consistent], dst[consistent])
    if homography is None:
        return None, consistent[:0]
    return homography, consistent[mask]


def _verify(page: np.ndarray, ref: LogoRef, homography: np.ndarray, inliers: int) -> LogoHit | None:
    """The measured hit when the homography is a plausible placement of the same shapes."""
    if _pose(ref, homography) is None:
        return None
    homography = _align(page, ref, homography)
    pose = _pose(ref, homography)
    if pose is None:
        return None
    corners, jacobian = pose
    scale_x, scale_y = np.linalg.norm(jacobian[:, 0]), np.linalg.norm(jacobian[:, 1])
    cos_skew = float(jacobian[:, 0] @ jacobian[:, 1] / (scale_x * scale_y))
    similarity, color = _compare(page, ref, homography, math.sqrt(scale_x * scale_y))
    if similarity < MIN_SIMILARITY:
        return None
    # Image rows grow downwards: a clockwise angle in pixels is counter-clockwise on the page.
    rotation = -math.degrees(math.atan2(jacobian[1, 0], jacobian[0, 0]))
    return LogoHit(
        corners=corners,
        inliers=inliers,
        similarity=similarity,
        rotation_deg=rotation,
        aspect_distortion=float(scale_x / scale_y - 1.0),
        skew_deg=math.degrees(math.asin(max(-1.0, min(1.0, cos_skew)))),
        color_distance=color,
    )


def _pose(ref: LogoRef, homography: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Page corners and local linear map of a plausible placement (convex, upright, sized)."""
    height, width = ref.image.shape[:2]
    corners_ref = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    corners = cv2.perspectiveTransform(corners_ref.reshape(-1, 1, 2), homography).reshape(-1, 2)
    if not cv2.isContourConvex(corners.reshape(-1, 1, 2)):
        return None
    jacobian = _jacobian(homography, width / 2, height / 2)
    scale_x, scale_y = np.linalg.norm(jacobian[:, 0]), np.linalg.norm(jacobian[:, 1])
    if np.linalg.det(jacobian) <= 0 or min(scale_x * width, scale_y * height) < _MIN_SIDE_PX:
        return None
    cos_skew = float(jacobian[:, 0] @ jacobian[:, 1] / (scale_x * scale_y))
    skew = math.degrees(math.asin(max(-1.0, min(1.0, cos_skew))))
    if not 1 / _MAX_ANISOTROPY <= scale_x / scale_y <= _MAX_ANISOTROPY or abs(skew) > _MAX_SKEW_DEG:
        return None
    return corners, jacobian


def _align(page: np.ndarray, ref: LogoRef, homography: np.ndarray) -> np.ndarray:
    """The affine placement refined to sub-pixel accuracy on the logo's ink (ECC), if it holds.

    Keypoints alone leave a pixel or so of play, which on a logo 30 pixels tall reads as a few
    per cent of stretch; aligning every ink pixel removes it.
    """
    height, width = ref.image.shape[:2]
    scale = math.sqrt(abs(np.linalg.det(_jacobian(homography, width / 2, height / 2))))
    template, shrink = _template(ref, scale)
    ink = np.ascontiguousarray(255 - page.min(axis=2) if page.ndim == 3 else 255 - page)
    start = (homography @ np.linalg.inv(shrink))[:2].astype(np.float32)
    try:
        score, warp = cv2.findTransformECC(
            template, ink.astype(np.float32), start.copy(), cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _ECC_ITERATIONS, 1e-5),
        )  # fmt: skip
    except cv2.error:
        return homography
    refined: np.ndarray = np.vstack([np.asarray(warp, np.float64), [0.0, 0.0, 1.0]]) @ shrink
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]]).T
    moved = np.abs((refined @ corners)[:2] - (homography @ corners)[:2]).max()
    if score < _ECC_MIN_SCORE or moved > _ECC_MAX_SHIFT * scale * max(width, height):
        return homography
    return refined


def _template(ref: LogoRef, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference ink at about the page's resolution of the logo, and the scaling used."""
    height, width = ref.image.shape[:2]
    factor = min(1.0, max(scale, _MIN_TEMPLATE_PX / width))
    size = (max(8, round(width * factor)), max(8, round(height * factor)))
    resized = cv2.resize(ref.image, size, interpolation=cv2.INTER_AREA)
    template = (255 - resized.min(axis=2)).astype(np.float32)
    return template, np.diag([size[0] / width, size[1] / height, 1.0])


def _jacobian(homography: np.ndarray, x: float, y: float) -> np.ndarray:
    """The linear part of a homography around a reference point."""
    u, v, w = homography @ np.array([x, y, 1.0])
    linear: np.ndarray = (homography[:2, :2] - np.outer([u / w, v / w], homography[2, :2])) / w
    return linear


def _compare(
    page: np.ndarray, ref: LogoRef, homography: np.ndarray, scale: float
) -> tuple[float, float]:
    """Shape agreement (worst grid cell) and mean colour distance of the page's logo region."""
    height, width = ref.image.shape[:2]
    # Compare at the page's own resolution of the logo: upsampling would only add blur.
    factor = min(1.0, max(scale, 64 / width))
    size = (max(8, round(width * factor)), max(8, round(height * factor)))
    shrink = np.diag([size[0] / width, size[1] / height, 1.0])
    to_page = homography @ np.linalg.inv(shrink)
    warped = cv2.warpPerspective(
        page, to_page, size, flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    ref_lab = _lab(cv2.resize(ref.image, size, interpolation=cv2.INTER_AREA))
    ref_mask = _ink(ref_lab, _background(ref_lab, None))
    page_lab = _lab(warped)
    page_mask = _ink(page_lab, _background(page_lab, ref_mask))
    similarity = _shape_agreement(ref_mask, page_mask, max(1, round(0.006 * size[0])))
    core = cv2.erode(ref_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    core = core if core.sum() >= 20 else ref_mask
    color = float(np.linalg.norm(page_lab[core] - ref_lab[core], axis=1).mean())
    return similarity, color


def _shape_agreement(ref_mask: np.ndarray, page_mask: np.ndarray, slack: int) -> float:
    """The worst grid cell's min(ink of ref covered by page, ink of page covered by ref)."""
    kernel = np.ones((2 * slack + 1, 2 * slack + 1), np.uint8)
    ref_near = cv2.dilate(ref_mask.astype(np.uint8), kernel).astype(bool)
    page_near = cv2.dilate(page_mask.astype(np.uint8), kernel).astype(bool)
    rows, cols = _GRID
    height, width = ref_mask.shape
    worst = 1.0
    min_ink = _MIN_CELL_INK * (height / rows) * (width / cols)
    for r in range(rows):
        for c in range(cols):
            cell = (
                slice(r * height // rows, (r + 1) * height // rows),
                slice(c * width // cols, (c + 1) * width // cols),
            )
            ref_ink, page_ink = ref_mask[cell], page_mask[cell]
            ref_count, page_count = int(ref_ink.sum()), int(page_ink.sum())
            if max(ref_count, page_count) < min_ink:
                continue
            covered = (ref_ink & page_near[cell]).sum() / ref_count if ref_count else 1.0
            explained = (page_ink & ref_near[cell]).sum() / page_count if page_count else 1.0
            worst = min(worst, float(covered), float(explained))
    return worst


def _lab(image: np.ndarray) -> np.ndarray:
    """CIELAB (L 0..100) of BGR pixels, as float32."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)


def _background(lab: np.ndarray, ink: np.ndarray | None) -> np.ndarray:
    """The background colour: median of the non-ink pixels, or of the border without a mask."""
    if ink is not None:
        outside = lab[~cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)]
        if len(outside) >= 16:
            return np.asarray(np.median(outside, axis=0))
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    return np.asarray(np.median(border, axis=0))


def _ink(lab: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels far enough from the background colour to be part of the logo."""
    return np.asarray(np.linalg.norm(lab - background, axis=2) > _INK_DELTA_E)


def _on_white(raw: np.ndarray) -> np.ndarray:
    """BGR pixels, with any transparency composited over white."""
    if raw.dtype != np.uint8:
        raw = cv2.convertScaleAbs(raw, alpha=255.0 / max(1.0, float(raw.max())))
    if raw.ndim == 2:
        return cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    if raw.shape[2] == 4:
        alpha = raw[:, :, 3:4].astype(np.float32) / 255.0
        blended = raw[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.asarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
    return raw[:, :, :3].copy()

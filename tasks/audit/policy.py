"""Audit policies: load a YAML file, validate it with precise messages, resolve logos, hash it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from pydantic import ValidationError

from core.audit_models import AuditPolicy

POLICIES_DIR = Path(__file__).resolve().parent / "policies"
DEFAULT_POLICY = POLICIES_DIR / "default.yaml"
MAX_POLICY_BYTES = 256 * 1024
_MAX_ERRORS = 10


class PolicyError(ValueError):
    """A policy that cannot be used, with every problem found, one per line."""


def load_policy(path: Path | None = None) -> AuditPolicy:
    """The policy in a YAML file (the shipped default when None), logo paths made absolute."""
    path = (path or DEFAULT_POLICY).resolve()
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise PolicyError(f"{path.name}: policy file not found: {path}") from exc
    except OSError as exc:
        raise PolicyError(f"{path.name}: policy file is not readable: {exc}") from exc
    return parse_policy(raw, source=path.name, base_dir=path.parent)


def parse_policy(
    raw: bytes | str,
    *,
    source: str,
    base_dir: Path,
    image_roots: Sequence[Path] | None = None,
) -> AuditPolicy:
    """A validated policy from YAML text; PolicyError names the file, key and problem.

    A relative logo path is looked up beside the policy file, then among the shipped policies;
    with `image_roots` (uploaded policies), a logo must lie inside one of those folders.
    """
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: policy is larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy is a mapping of keys, not {type(data).__name__}")
    try:
        policy = AuditPolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_validation_problems(source, exc)) from exc
    problems = _duplicate_ids(policy)
    logos = []
    for index, logo in enumerate(policy.logos):
        try:
            image = _resolve_image(logo.image, base_dir, image_roots)
        except PolicyError as exc:
            problems.append(f"logos[{index}].image: {exc}")
            continue
        logos.append(logo.model_copy(update={"image": str(image)}))
    if problems:
        raise PolicyError("\n".join(f"{source}: {problem}" for problem in problems))
    return policy.model_copy(update={"logos": logos})


def policy_hash(policy: AuditPolicy) -> str:
    """A content hash of the policy and its logo images, stable across machines and paths."""
    data = policy.model_dump(mode="json")
    for logo in data["logos"]:
        logo["image"] = hashlib.sha256(Path(logo["image"]).read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _resolve_image(image: str, base_dir: Path, roots: Sequence[Path] | None) -> Path:
    """The absolute path of a readable logo image; PolicyError saying what is wrong."""
    given = Path(image)
    candidates = [given] if given.is_absolute() else [base_dir / given, POLICIES_DIR / given]
    found = next((c.resolve() for c in candidates if c.is_file()), None)
    if found is None:
        tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise PolicyError(f"logo image {image!r} not found (looked for {tried})")
    if roots is not None and not any(found.is_relative_to(r.resolve()) for r in roots):
        raise PolicyError(f"logo image {image!r} is outside the allowed folders")
    pixels = cv2.imdecode(np.fromfile(found, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise PolicyError(f"logo image {image!r} is not a readable PNG or JPEG image")
    return found


def _duplicate_ids(policy: AuditPolicy) -> list[str]:
    """A problem line for every rule id used twice within disclaimers or within logos."""
    problems = []
    for key, ids in (
        ("disclaimers", [rule.id for rule in policy.disclaimers]),
        ("logos", [rule.id for rule in policy.logos]),
    ):
        for index, rule_id in enumerate(ids):
            if rule_id in ids[:index]:
                problems.append(f"{key}[{index}].id: duplicate id {rule_id!r}")
    return problems


def _validation_problems(source: str, exc: ValidationError) -> str:
    """One line per validation error: the key path in YAML terms and what is wrong with it."""
    lines = []
    for error in exc.errors()[:_MAX_ERRORS]:
        where = _location(error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"{source}: {where}: unknown key")
        elif error["type"] == "missing":
            lines.append(f"{source}: {where}: required key is missing")
        else:
            lines.append(f"{source}: {where}: {error['msg']} (got {_short(error.get('input'))})")
    if len(exc.errors()) > _MAX_ERRORS:
        lines.append(f"{source}: … and {len(exc.errors()) - _MAX_ERRORS} more problems")
    return "\n".join(lines)


def _location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a YAML key path: disclaimers[0].text.es."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)

"""Loading audit policies: the shipped default, precise errors, logo paths, and the content hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.audit.policy import (
    DEFAULT_POLICY,
    POLICIES_DIR,
    PolicyError,
    load_policy,
    parse_policy,
    policy_hash,
)
from tests.audit_docgen import make_logo_png

GOOD = """
name: acme
disclaimers:
  - id: legal
    text: {es: "Texto legal obligatorio.", en: "Mandatory legal text."}
logos:
  - id: brand
    image: logo.png
    region: [0, 0, 1, 0.25]
spelling: {glossary: [Octavius]}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A folder with a good policy file and its logo image."""
    folder = tmp_path / "policy"
    folder.mkdir()
    make_logo_png(folder / "logo.png")
    (folder / "policy.yaml").write_text(GOOD)
    return folder


def test_load_policy_resolves_logo_beside_the_policy(policy_dir: Path) -> None:
    policy = load_policy(policy_dir / "policy.yaml")
    assert policy.name == "acme"
    assert policy.disclaimers[0].text["en"] == "Mandatory legal text."
    assert policy.logos[0].image == str((policy_dir / "logo.png").resolve())
    assert policy.spelling.glossary == ["Octavius"]


def test_default_policy_is_valid_once_its_logo_exists() -> None:
    logo = POLICIES_DIR / "octavius-logo.png"
    if not logo.exists():
        with pytest.raises(
            PolicyError, match=r"logos\[0\]\.image: logo image 'octavius-logo.png' not found"
        ):
            load_policy()
        return
    policy = load_policy()
    assert policy.name == "default"
    assert {"es", "en"} <= set(policy.disclaimers[0].text)
    assert "Octavius" in policy.spelling.glossary
    assert policy.logos[0].image == str(logo.resolve())
    assert load_policy(DEFAULT_POLICY) == policy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # a misspelt key is named with its full path
        ("disclaimers:\n  - id: a\n    txt: {es: hola}\n", "disclaimers[0].txt: unknown key"),
        # a required key is missing
        ("disclaimers:\n  - id: a\n", "disclaimers[0].text: required key is missing"),
        # a wrong type shows what was given
        ("page: {orientation: sideways}\n", "page.orientation: Input should be 'portrait'"),
        # a language that is not es or en
        ("disclaimers:\n  - id: a\n    text: {fr: bonjour}\n", "disclaimers[0].text.fr"),
        # broken YAML with its position
        ("name: [unclosed\n", "not valid YAML"),
        # a list instead of a mapping
        ("- a\n- b\n", "a policy is a mapping of keys, not list"),
        # the same rule id twice
        (
            "disclaimers:\n  - {id: a, text: {es: x}}\n  - {id: a, text: {es: y}}\n",
            "disclaimers[1].id: duplicate id 'a'",
        ),
        # a logo image that does not exist
        (
            "logos:\n  - {id: l, image: nowhere.png}\n",
            "logos[0].image: logo image 'nowhere.png' not found",
        ),
    ],
    ids=[
        "unknown-key",
        "missing-key",
        "bad-value",
        "bad-language",
        "yaml",
        "not-mapping",
        "duplicate",
        "no-logo",
    ],
)
def test_parse_policy_errors_are_precise(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, source="mine.yaml", base_dir=tmp_path)
    assert str(raised.value).startswith("mine.yaml: ")
    assert message in str(raised.value)


def test_logo_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_text("not an image")
    with pytest.raises(PolicyError, match="not a readable PNG or JPEG image"):
        parse_policy("logos:\n  - {id: l, image: logo.png}\n", source="p.yaml", base_dir=tmp_path)


def test_uploaded_policy_cannot_reach_outside_allowed_folders(
    policy_dir: Path, tmp_path: Path
) -> None:
    text = f"logos:\n  - {{id: l, image: {policy_dir / 'logo.png'}}}\n"
    with pytest.raises(PolicyError, match="outside the allowed folders"):
        parse_policy(text, source="upload", base_dir=tmp_path / "up", image_roots=[tmp_path / "up"])


def test_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "absent.yaml")


def test_policy_hash_follows_content_not_location(policy_dir: Path, tmp_path: Path) -> None:
    first = load_policy(policy_dir / "policy.yaml")
    moved = tmp_path / "moved"
    shutil.copytree(policy_dir, moved)
    assert policy_hash(load_policy(moved / "policy.yaml")) == policy_hash(first)
    make_logo_png(moved / "logo.png", size=(300, 150))
    assert policy_hash(load_policy(moved / "policy.yaml")) != policy_hash(first)
    (moved / "policy.yaml").write_text(GOOD.replace("acme", "acme2"))
    assert policy_hash(load_policy(moved / "policy.yaml")) != policy_hash(first)

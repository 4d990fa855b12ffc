"""`octavius audit` in-process: a real flow run on a generated PDF, and a bad policy refused."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from core.cli import app
from tests.audit_docgen import make_audit_pdf

BODY = "The backup server runs every night and keeps seven daily copies on external storage."
POLICY = "name: cli\ndisclaimers:\n  - id: legal\n    text: {en: This text is required.}\n"


def test_cli_audit_json_reports_each_file(stack_env: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    pdf = make_audit_pdf(tmp_path / "report.pdf", [[BODY, "This text is required."]])
    result = CliRunner().invoke(app, ["audit", str(pdf), "--policy", str(policy), "--json"])
    report = json.loads(result.stdout)
    assert report["policy"] == "cli"
    (file,) = report["reports"]
    assert file["file"] == str(pdf)
    disclaimer = next(a for a in file["auditors"] if a["auditor"] == "disclaimer")
    assert [f["rule"] for f in disclaimer["findings"]] == ["disclaimer.present"]
    # Exit code 1 only when a file fails or errs.
    assert result.exit_code == (1 if file["verdict"] in ("failed", "error") else 0), result.output


def test_cli_audit_bad_policy_exits_2_with_the_problem(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("fonts: {allowed: [Arial], colour: red}\n")
    pdf = make_audit_pdf(tmp_path / "report.pdf", [[BODY]])
    result = CliRunner().invoke(app, ["audit", str(pdf), "--policy", str(policy)])
    assert result.exit_code == 2
    assert "policy.yaml: fonts.colour: unknown key" in result.output

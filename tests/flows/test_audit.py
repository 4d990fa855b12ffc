"""The audit flow through Prefect's harness and a real Dask cluster, on generated PDFs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterTaskRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
)

from core.audit_models import AuditBatchReport, Auditor, Verdict
from flows.audit import audit_document
from tasks.audit.policy import PolicyError
from tests.audit_docgen import LogoSpec, make_audit_pdf, make_logo_png
from tests.docgen import make_corrupt_pdf

DISCLAIMER = (
    "Este documento es confidencial y está destinado exclusivamente a su destinatario. "
    "Queda prohibida su copia sin autorización previa por escrito de Octavius."
)
BODY = (
    "El servidor de copias de seguridad se ejecuta cada noche y conserva siete copias "
    "diarias en el almacenamiento externo de la oficina central."
)
POLICY = f"""
name: test-policy
disclaimers:
  - id: confidencial
    text: {{es: "{DISCLAIMER}"}}
fonts:
  allowed: [Bitstream Vera Sans, BitstreamVeraSans, Vera]
logos:
  - id: brand
    image: logo.png
    pages: first
spelling:
  glossary: [Octavius]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """A policy with one disclaimer and one logo, beside its logo image."""
    folder = tmp_path / "policy"
    folder.mkdir()
    make_logo_png(folder / "logo.png")
    (folder / "policy.yaml").write_text(POLICY)
    return folder / "policy.yaml"


@pytest.fixture
def good_pdf(tmp_path: Path, policy_file: Path) -> Path:
    """A clean two-page Spanish document with the disclaimer and the logo."""
    logo = LogoSpec(policy_file.parent / "logo.png", page=1, x=72, y=700, width=120, height=60)
    return make_audit_pdf(
        tmp_path / "informe.pdf",
        [["# Informe", BODY, BODY], [BODY, DISCLAIMER]],
        logos=[logo],
    )


async def _auditor_progress(flow_run_id: str) -> dict[str, float]:
    """The final percent of each auditor task's own progress artifact."""
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        names = {run.id: run.name.split(" ")[0] for run in runs}
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                type=ArtifactFilterType(any_=["progress"]),
                task_run_id=ArtifactFilterTaskRunId(any_=list(names)),
            )
        )
    return {names[a.task_run_id]: float(a.data) for a in artifacts if a.task_run_id in names}  # type: ignore[arg-type]


async def _task_run_states(flow_run_id: str) -> dict[str, str]:
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {run.name: run.state.name for run in runs if run.state is not None}


def test_audit_flow_reports_each_file_and_isolates_a_corrupt_one(
    stack_env: Path, tmp_path: Path, policy_file: Path, good_pdf: Path
) -> None:
    broken = make_corrupt_pdf(tmp_path / "roto.pdf")
    state = audit_document(
        paths=[str(good_pdf), str(broken)],
        policy=str(policy_file),
        tenant="acme",
        names={str(good_pdf): "informe.pdf", str(broken): "roto.pdf"},
        return_state=True,
    )
    report = state.result()
    assert isinstance(report, AuditBatchReport)
    assert report.policy == "test-policy"
    by_file = {r.file: r for r in report.reports}
    assert set(by_file) == {"informe.pdf", "roto.pdf"}

    bad = by_file["roto.pdf"]
    assert bad.verdict is Verdict.ERROR and bad.auditors == []
    assert bad.error is not None and bad.error.startswith("corrupt: PDF is not readable")

    good = by_file["informe.pdf"]
    assert good.error is None and good.page_count == 2 and good.language == "es"
    assert {a.auditor for a in good.auditors} == set(Auditor)
    assert [a.error for a in good.auditors] == [None] * 4
    auditors = {a.auditor: a for a in good.auditors}
    disclaimer = auditors[Auditor.DISCLAIMER]
    assert disclaimer.verdict is Verdict.PASSED
    assert [(f.rule, f.page) for f in disclaimer.findings] == [("disclaimer.present", 2)]
    assert good.annotated_pdf is not None and Path(good.annotated_pdf).is_file()
    assert Path(good.annotated_pdf).is_relative_to(stack_env)
    # Each auditor task reported its own progress, to 100 %.
    progress = asyncio.run(_auditor_progress(str(state.state_details.flow_run_id)))
    assert {k: v for k, v in progress.items() if k != "logo"} == {
        "disclaimer": 100.0,
        "format": 100.0,
        "grammar": 100.0,
    }

    # Unchanged file, unchanged policy: every auditor task comes from the cache.
    again = audit_document(
        paths=[str(good_pdf)], policy=str(policy_file), tenant="acme", return_state=True
    )
    rerun = again.result()
    assert [a.model_dump(exclude={"seconds"}) for a in rerun.reports[0].auditors] == [
        a.model_dump(exclude={"seconds"}) for a in good.auditors
    ]
    states = asyncio.run(_task_run_states(str(again.state_details.flow_run_id)))
    audited = {
        name: s
        for name, s in states.items()
        if name.split(" ")[0] in {"disclaimer", "format", "grammar", "logo"}
    }
    assert len(audited) == 4 and set(audited.values()) == {"Cached"}, states


def test_audit_flow_with_altered_disclaimer_fails_it(
    stack_env: Path, tmp_path: Path, policy_file: Path
) -> None:
    pdf = make_audit_pdf(
        tmp_path / "alterado.pdf", [[BODY, DISCLAIMER.replace("prohibida", "permitida")]]
    )
    report = audit_document(paths=[str(pdf)], policy=str(policy_file), tenant="acme")
    (file,) = report.reports
    disclaimer = next(a for a in file.auditors if a.auditor is Auditor.DISCLAIMER)
    assert disclaimer.verdict is Verdict.FAILED
    assert [f.rule for f in disclaimer.findings] == ["disclaimer.altered"]
    assert file.verdict in (Verdict.FAILED, Verdict.ERROR)


def test_audit_flow_with_bad_policy_fails_with_the_reason(
    stack_env: Path, tmp_path: Path, good_pdf: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("disclaimers:\n  - id: a\n    txt: hola\n")
    with pytest.raises(PolicyError, match=r"disclaimers\[0\]\.txt: unknown key"):
        audit_document(paths=[str(good_pdf)], policy=str(bad))

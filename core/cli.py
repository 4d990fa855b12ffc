"""The `octavius` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Octavius Pipelines: background jobs of the Octavius assistant.", no_args_is_help=True
)
eval_app = typer.Typer(help="Measure retrieval and research quality.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _prepare_environment(*, runs_flows: bool = False) -> None:
    """Points this process at the running stack of OCTAVIUS_HOME, or at a private Prefect home.

    With `runs_flows`, flows run in this process: their results go to OCTAVIUS_STORAGE_URL.
    """
    from core.settings import get_settings
    from deployments.stack import read_stack

    settings = get_settings()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Heartbeats every 30 s, as in the stack, so the crash automation can tell a long run
    # from a dead one.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    # A busy two-core machine needs more than Prefect's default 20 s to start the
    # temporary server a flow uses when no stack is up.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    stack = read_stack(settings)
    home = settings.home.resolve()
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(home / "results"))
    # The temporary server Prefect starts without a stack keeps its SQLite file there.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    if stack is not None:
        os.environ.setdefault("PREFECT_API_URL", stack.prefect_api_url)
        if not settings.dask_address:
            os.environ["OCTAVIUS_DASK_ADDRESS"] = stack.dask_address
            get_settings.cache_clear()
    if runs_flows:
        from core.storage import apply_result_storage

        apply_result_storage(get_settings())


def _emit(model: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(model.model_dump_json(indent=2) + "\n")


@app.command()
def up() -> None:
    """Start the embedded stack: Prefect server, Dask, served deployments and the API."""
    from core.settings import get_settings
    from deployments.stack import Stack

    _prepare_environment()
    Stack(get_settings(), echo=console.print).run()


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursively).")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove indexed documents gone from these folders.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest files and folders into the knowledge base."""
    _prepare_environment(runs_flows=True)
    from core.progress_bar import follow_progress
    from core.settings import get_settings
    from flows.ingest import ingest_documents

    with follow_progress(console, enabled=not as_json):
        report = ingest_documents(
            paths=[str(p) for p in paths], tenant=get_settings().tenant, prune=prune
        )
    _emit(report, as_json)
    if not as_json:
        table = Table("document", "status", "lang", "pages", "chunks", "reason")
        for doc in report.documents:
            table.add_row(
                doc.source,
                doc.status.value,
                doc.language or "",
                str(doc.pages or ""),
                str(doc.chunks),
                f"{doc.reason.value}: {doc.error}" if doc.reason else "",
            )
        console.print(table)
        console.print(
            f"{report.indexed} indexed, {report.unchanged} unchanged, {report.failed} failed, "
            f"{report.removed} removed in {report.seconds:.1f} s"
        )


@app.command()
def audit(
    files: Annotated[list[Path], typer.Argument(help="PDF files to audit.")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Audit policy YAML; default: the shipped one.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Audit PDFs: disclaimers, format, grammar and logos; exit code 1 when any file fails."""
    _prepare_environment(runs_flows=True)
    from core.audit_models import Verdict
    from core.progress_bar import follow_progress
    from core.settings import get_settings
    from flows.audit import audit_document
    from tasks.audit.policy import PolicyError, load_policy

    try:
        load_policy(policy)
    except PolicyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    paths = [str(f.resolve()) for f in files]
    with follow_progress(console, enabled=not as_json):
        report = audit_document(
            paths=paths,
            policy=str(policy.resolve()) if policy else None,
            tenant=get_settings().tenant,
            names={path: str(f) for path, f in zip(paths, files, strict=True)},
        )
    _emit(report, as_json)
    if not as_json:
        table = Table("file", "verdict", "disclaimer", "format", "grammar", "logo", "error")
        for file in report.reports:
            verdicts = {a.auditor.value: a.verdict.value for a in file.auditors}
            table.add_row(
                file.file,
                file.verdict.value,
                *(verdicts.get(name, "") for name in ("disclaimer", "format", "grammar", "logo")),
                file.error or "",
            )
        console.print(table)
        for file in report.reports:
            for auditor in file.auditors:
                if auditor.error:
                    console.print(f"{file.file}: {auditor.auditor.value} failed: {auditor.error}")
                for finding in auditor.findings:
                    if finding.severity.value != "info":
                        page = f"p.{finding.page}" if finding.page else "-"
                        console.print(
                            f"{file.file} {page} [{finding.severity.value}] {finding.rule}: "
                            f"{finding.message}"
                        )
            if file.annotated_pdf:
                console.print(f"{file.file}: annotated copy at {file.annotated_pdf}")
    if any(r.verdict in (Verdict.FAILED, Verdict.ERROR) for r in report.reports):
        raise typer.Exit(1)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int, typer.Option("-k", min=1, max=500, help="Hits to return.")] = 5,
    mode: Annotated[str, typer.Option(help="fused, dense or sparse.")] = "fused",
    as_json: JsonOption = False,
) -> None:
    """Search the knowledge base (hybrid dense + sparse)."""
    _prepare_environment()
    from pydantic import BaseModel

    from core.models import SearchHit
    from core.search import hybrid_search
    from core.settings import get_settings

    if mode not in ("fused", "dense", "sparse"):
        raise typer.BadParameter("mode must be fused, dense or sparse")

    class Hits(BaseModel):
        query: str
        hits: list[SearchHit]

    hits = hybrid_search(query, tenant=get_settings().tenant, k=k, mode=mode)  # type: ignore[arg-type]
    _emit(Hits(query=query, hits=hits), as_json)
    if not as_json:
        if not hits:
            console.print("No hits.")
        for rank, hit in enumerate(hits, start=1):
            pages = ",".join(map(str, hit.pages)) or "-"
            console.print(
                f"[bold]{rank}. {hit.title}[/bold]  {hit.source}  p.{pages}  ({hit.score:.4f})"
            )
            console.print("   " + " ".join(hit.text.split())[:300])


@app.command()
def research(
    query: Annotated[str, typer.Argument(help="The question.")],
    language: Annotated[
        str | None, typer.Option("--language", help="Language of the report: es or en.")
    ] = None,
    depth: Annotated[
        int, typer.Option("--depth", min=1, max=5, help="Sub-questions and passages to use.")
    ] = 3,
    as_json: JsonOption = False,
) -> None:
    """Write a cited report that answers a question from the knowledge base."""
    if language not in (None, "es", "en"):
        raise typer.BadParameter("language must be es or en", param_hint="--language")
    _prepare_environment(runs_flows=True)
    from rich.markdown import Markdown

    from core.progress_bar import follow_progress
    from core.settings import get_settings
    from flows.research import deep_research
    from tasks.research.report import report_markdown

    with follow_progress(console, enabled=not as_json):
        report = deep_research(
            query=query,
            tenant=get_settings().tenant,
            language=language,  # type: ignore[arg-type]
            depth=depth,
        )
    _emit(report, as_json)
    if not as_json:
        console.print(Markdown(report_markdown(report)))


@app.command()
def status(
    task_id: Annotated[str, typer.Argument(help="A task (flow run) id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a task's state, progress and result."""
    _prepare_environment()
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from api.prefect_tasks import task_status

    async def read() -> Any:
        from uuid import UUID

        async with get_client() as client:
            run = await client.read_flow_run(UUID(task_id))
            return await task_status(client, run)

    try:
        result = asyncio.run(read())
    except (ValueError, ObjectNotFound) as exc:
        console.print(f"[red]no such task: {task_id}[/red]")
        raise typer.Exit(1) from exc
    if as_json:
        _emit(result, True)
    else:
        console.print_json(json.dumps(result.model_dump(mode="json")))


@app.command()
def reindex(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when model and chunking are unchanged.")
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Point the alias back at the previous version.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rebuild the knowledge base into a new collection version and swap it in."""
    if force and rollback:
        raise typer.BadParameter("--force and --rollback exclude each other")
    _prepare_environment(runs_flows=True)
    from core.progress_bar import follow_progress
    from flows.reindex import reindex_collection
    from tasks.reindex import report_markdown

    try:
        with follow_progress(console, enabled=not as_json):
            report = reindex_collection(force=force, rollback=rollback)
    except Exception as exc:
        console.print(f"[red]reindex failed, the live version is unchanged: {exc}[/red]")
        raise typer.Exit(1) from exc
    _emit(report, as_json)
    if not as_json:
        console.print(report_markdown(report))


@app.command()
def cleanup(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove old uploads, results, orphan points, expired versions and stale rate limits."""
    _prepare_environment(runs_flows=True)
    from flows.cleanup import cleanup_resources
    from tasks.cleanup import report_markdown

    report = cleanup_resources(dry_run=dry_run)
    _emit(report, as_json)
    if not as_json:
        console.print(report_markdown(report))
    if report.errors:
        raise typer.Exit(1)


@app.command()
def retry(
    task_id: Annotated[str, typer.Argument(help="A failed or crashed task (flow run) id.")],
    as_json: JsonOption = False,
) -> None:
    """Re-queue a failed or crashed task under the same id; cached steps are reused."""
    _prepare_environment()
    import asyncio
    from uuid import UUID

    from fastapi import HTTPException
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from api.prefect_tasks import retry_task, task_status
    from tasks.runs import untag_dead_letter

    async def requeue() -> Any:
        async with get_client() as client:
            run = await client.read_flow_run(UUID(task_id))
            await retry_task(client, run)
            return await task_status(client, await client.read_flow_run(run.id))

    try:
        result = asyncio.run(requeue())
    except (ValueError, ObjectNotFound) as exc:
        console.print(f"[red]no such task: {task_id}[/red]")
        raise typer.Exit(1) from exc
    except HTTPException as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    untag_dead_letter(UUID(task_id))
    if as_json:
        _emit(result, True)
    else:
        console.print(f"{task_id} re-queued: {result.state}")


@eval_app.command("retrieval")
def eval_retrieval(
    questions: Annotated[Path, typer.Argument(help="JSONL: {query, answers, document?} per line.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Cut-off for recall@k.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Print recall@1, recall@k and MRR@10 for dense, sparse and fused search."""
    _prepare_environment()
    from core.evaluation import evaluate_retrieval, load_questions
    from core.settings import get_settings

    try:
        loaded = load_questions(questions)
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    report = evaluate_retrieval(loaded, tenant=get_settings().tenant, k=k)
    _emit(report, as_json)
    if not as_json:
        table = Table("mode", "n", "recall@1", f"recall@{k}", "MRR@10")
        for mode, scores in report.modes.items():
            table.add_row(
                mode,
                str(scores.n),
                f"{scores.recall_at_1:.3f}",
                f"{scores.recall_at_k:.3f}",
                f"{scores.mrr_at_10:.3f}",
            )
        console.print(table)


@eval_app.command("research")
def eval_research(
    questions: Annotated[
        Path, typer.Argument(help="JSONL: {query, answers, document?, answerable?} per line.")
    ],
    depth: Annotated[int, typer.Option("--depth", min=1, max=5, help="Research depth.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Print how often reports hold a gold answer, cite resolvable passages and say "nothing
    relevant" when they should, and the median time per report."""
    _prepare_environment()
    from core.settings import get_settings
    from tasks.research.evaluation import evaluate_research, load_research_questions

    try:
        loaded = load_research_questions(questions)
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    scores = evaluate_research(loaded, tenant=get_settings().tenant, depth=depth)
    _emit(scores, as_json)
    if not as_json:

        def share(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        table = Table("figure", "value")
        table.add_row(
            "questions (answerable / not)", f"{scores.answerable} / {scores.unanswerable}"
        )
        table.add_row("gold answer in report text", share(scores.answer_in_report))
        table.add_row("gold answer in cited passages", share(scores.answer_in_sources))
        table.add_row(
            "citations resolving", f"{share(scores.citations_resolved)} of {scores.citations}"
        )
        table.add_row("'nothing relevant' on unanswerable", share(scores.nothing_found_accuracy))
        table.add_row("'nothing relevant' on answerable", share(scores.false_nothing_found))
        table.add_row("median seconds per report", f"{scores.median_seconds:.2f}")
        console.print(table)


if __name__ == "__main__":
    app()

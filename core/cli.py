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
eval_app = typer.Typer(help="Measure retrieval quality.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _prepare_environment() -> None:
    """Points this process at the running stack of OCTAVIUS_HOME, or at a private Prefect home."""
    from core.settings import get_settings
    from deployments.stack import read_stack

    settings = get_settings()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A busy two-core machine needs more than Prefect's default 20 s to start the
    # temporary server a flow uses when no stack is up.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    stack = read_stack(settings)
    home = settings.home.resolve()
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(home / "results"))
    if stack is not None:
        os.environ.setdefault("PREFECT_API_URL", stack.prefect_api_url)
        if not settings.dask_address:
            os.environ["OCTAVIUS_DASK_ADDRESS"] = stack.dask_address
            get_settings.cache_clear()


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
    _prepare_environment()
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


if __name__ == "__main__":
    app()

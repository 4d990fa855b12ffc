"""A terminal progress bar fed by a flow's progress updates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tasks.progress import ProgressUpdate, add_listener, remove_listener


@contextmanager
def follow_progress(console: Console, enabled: bool = True) -> Iterator[None]:
    """Shows every progress update of flows run in this process while the block runs."""
    if not enabled:
        yield
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task_id = bar.add_task("Starting", total=100)

        def listener(update: ProgressUpdate) -> None:
            bar.update(task_id, completed=update.percent, description=update.message)

        add_listener(listener)
        try:
            yield
        finally:
            remove_listener(listener)

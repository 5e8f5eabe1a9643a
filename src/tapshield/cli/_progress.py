"""Progress bars for anything that can take more than a second."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tapshield.cli._app import console


@contextlib.contextmanager
def reading_progress(path: Path) -> Iterator[Callable[[int], None]]:
    """A spinner with a live row count while a file is read; ``advance(rows)``."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"reading {path.name}", total=None, rows=0)

        def advance(rows: int) -> None:
            progress.update(task, rows=rows)

        yield advance


@contextlib.contextmanager
def steps(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A bar for a known number of steps; ``advance(n)``."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance

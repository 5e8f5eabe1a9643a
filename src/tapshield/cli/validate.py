"""``tapshield validate``: check an events or changes file against its contract."""

from __future__ import annotations

from pathlib import Path

import typer

from tapshield.cli._app import EXIT_OK, EXIT_REJECTS, UsageError, app, console, friendly


@app.command()
@friendly
def validate(
    file: Path = typer.Argument(..., help="Events (.csv, .csv.gz, .jsonl[.gz], .parquet) "
                                "or a changes file (with --changes)."),
    changes: bool = typer.Option(False, "--changes", help="The file is a changes file."),
    out: Path | None = typer.Option(
        None, "--out", help="Also write the accepted rows here (format from the suffix)."
    ),
    rejects: Path | None = typer.Option(
        None, "--rejects",
        help="Where to write rejected rows with their reasons "
        "(default: beside --out, else ./<file>.rejects.csv).",
    ),
    max_rejects: int = typer.Option(
        0, "--max-rejects", min=0, help="Exit 0 while at most this many rows are rejected."
    ),
    chunk_rows: int = typer.Option(500_000, "--chunk-rows", min=1, hidden=True),
) -> None:
    """Check every row against the contract; name the row, column and rule of each error."""
    from rich.markup import escape
    from rich.table import Table

    from tapshield.app.outputs import StagedFile, check_distinct
    from tapshield.cli._progress import reading_progress
    from tapshield.events.changes import read_changes
    from tapshield.events.read import EventReader
    from tapshield.events.rejects import RejectWriter as RejectFile
    from tapshield.events.write import EventWriter

    if changes and out is not None:
        raise UsageError("--out writes accepted events; it cannot be used with --changes")
    default_dir = out.parent if out is not None else Path.cwd()
    reject_path = rejects or default_dir / f"{file.name}.rejects.csv"
    if not file.exists():
        raise UsageError(f"{file}: no such file")
    check_distinct({"file": file}, {"--out": out, "--rejects": reject_path})
    # Both outputs are written under temporary names and renamed into place at
    # the end: an interrupted or failed run leaves no file that looks complete.
    staged_rejects = StagedFile(reject_path)
    staged_out = StagedFile(out) if out is not None else None
    sink = RejectFile(staged_rejects.temp)
    committed = False
    try:
        if changes:
            result = read_changes(file)
            sink.write(result.rejects)
            sink.close()
            read, accepted, rejected = (
                result.valid.height + result.rejects.height, result.valid.height,
                result.rejects.height,
            )
            errors = result.errors(limit=20)
        else:
            reader = EventReader(file, chunk_rows=chunk_rows, on_reject=sink.write)
            writer = EventWriter(staged_out.temp) if staged_out is not None else None
            with reading_progress(file) as advance:
                for batch in reader:
                    if writer is not None:
                        writer.write(batch)
                    advance(reader.stats.rows)
            if writer is not None:
                writer.close()
            sink.close()
            read, accepted, rejected = (
                reader.stats.rows, reader.stats.accepted, reader.stats.rejected
            )
            errors = reader.stats.errors
        if staged_out is not None:
            staged_out.commit()
        staged_rejects.commit()
        committed = True
    finally:
        if not committed:
            sink.close()
            staged_rejects.abandon()
            if staged_out is not None:
                staged_out.abandon()

    for e in errors:
        console.print(f"[red]rejected[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    if rejected > len(errors):
        console.print(f"... and {rejected - len(errors)} more row(s): see "
                      f"{escape(str(reject_path))}", highlight=False)
    table = Table(show_header=False, box=None)
    table.add_row("rows read", f"{read:,}")
    table.add_row("accepted", f"[green]{accepted:,}[/]")
    table.add_row("rejected", f"[red]{rejected:,}[/]" if rejected else "0")
    if rejected:
        table.add_row("rejects file", escape(str(reject_path)))
    if out is not None:
        table.add_row("accepted rows written to", escape(str(out)))
    console.print(table)
    raise typer.Exit(EXIT_REJECTS if rejected > max_rejects else EXIT_OK)

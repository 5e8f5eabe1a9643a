"""``tapshield drill``: a game day. Simulate a fault, run the pipeline, grade the response."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tapshield.cli._app import EXIT_OK, UsageError, app, console, err_console, friendly

if TYPE_CHECKING:
    from tapshield.pipeline import Sink


@app.command()
@friendly
def drill(
    scenario: str | None = typer.Argument(
        None, metavar="[SCENARIO]", help="A library scenario name or a scenario YAML file."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Keep the simulation, the analysis and scorecard.json here "
        "(default: a temporary directory)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the scenario's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the scorecard as JSON."),
    no_failover: bool = typer.Option(
        False, "--no-failover", help="Skip the failover replay (payments saved)."),
    truth: Path | None = typer.Option(
        None, "--truth", help="Grade existing output instead: a truth.json ..."),
    incidents: Path | None = typer.Option(
        None, "--incidents", help="... and the pipeline's incidents.json ..."),
    alerts: Path | None = typer.Option(
        None, "--alerts", help="... and optionally its alerts.jsonl."),
    audit_db: str | None = typer.Option(
        None, "--audit-db", help="Also record the run's decisions (pages, incident changes) in "
        "the transparency log of this database, signed with $TAPSHIELD_AUDIT_SIGNER_FILE's key "
        "if set (see `tapshield audit`)."),
) -> None:
    """Run SCENARIO through the pipeline and print a scorecard against its ground truth."""
    from tapshield.app.drill import grade, run_drill
    from tapshield.cli._show import print_scorecard

    if truth is not None or incidents is not None:
        if truth is None or incidents is None:
            raise UsageError("grading existing output needs both --truth and --incidents")
        if scenario is not None:
            raise UsageError("give a SCENARIO to run, or --truth/--incidents to grade, not both")
        print_scorecard(grade(truth, incidents, alerts).to_dict(), as_json)
        raise typer.Exit(EXIT_OK)
    if scenario is None:
        raise UsageError("which scenario? give a name (tapshield simulate --list) or a YAML file")
    keep = out is not None
    work = out if out is not None else Path(tempfile.mkdtemp(prefix="tapshield-drill-"))
    from tapshield.app.outputs import graceful_stop

    with graceful_stop() as stop, console.status("drill") as status:
        result = run_drill(scenario, work, seed=seed, failover=not no_failover,
                           progress=lambda s: status.update(f"drill: {s}"),
                           sinks=_audit_sinks(audit_db, f"drill {scenario}"), stop=stop)
    print_scorecard(result.to_dict(), as_json)
    if result.interrupted:
        err_console.print("interrupted: the scorecard grades the events analysed until then "
                          "(scorecard.json says status \"interrupted\")", highlight=False)
    if not keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _audit_sinks(url: str | None, run: str) -> list[Sink]:
    if url is None:
        return []
    from tapshield.audit.log import AuditLog
    from tapshield.audit.sink import AuditSink
    from tapshield.audit.witness import load_signer
    from tapshield.storage import Store
    from tapshield.storage.audit import SqlAuditStore

    log = AuditLog(SqlAuditStore(Store(url).engine), signer=load_signer())
    return [AuditSink(log, run_id=run)]

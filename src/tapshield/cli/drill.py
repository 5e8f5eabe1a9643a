"""``tapshield drill``: a game day. Simulate a fault, run the pipeline, grade the response."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    no_respond: bool = typer.Option(
        False, "--no-respond", help="Skip the response stage (customer notices, partner "
        "webhooks, playbooks: sent to receivers started on 127.0.0.1, see docs/respond.md)."),
    respond_db: str | None = typer.Option(
        None, "--respond-db", help="Keep the response's outbox and timeline in this database "
        "(default: a SQLite file in the output directory)."),
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
        sinks = _audit_sinks(audit_db, f"drill {scenario}")
        result = run_drill(scenario, work, seed=seed, failover=not no_failover,
                           progress=lambda s: status.update(f"drill: {s}"), sinks=sinks,
                           respond=None if no_respond else _responder(respond_db, sinks),
                           stop=stop)
    data = result.to_dict()
    print_scorecard(data, as_json)
    if not as_json:
        _print_response(data)
    if result.interrupted:
        err_console.print("interrupted: the scorecard grades the events analysed until then "
                          "(scorecard.json says status \"interrupted\")", highlight=False)
    if not keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _responder(db_url: str | None, sinks: list[Sink]) -> Any:
    from functools import partial

    from tapshield.comms.drill import respond_in_drill

    log = next((getattr(s, "log", None) for s in sinks if hasattr(s, "log")), None)
    return partial(respond_in_drill, db_url=db_url, audit=log)


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


def _print_response(data: dict[str, Any]) -> None:
    from rich.table import Table

    guard = data.get("misfire_guard")
    if isinstance(guard, list):
        t = Table(show_header=False, box=None)
        t.add_row("misfire guard", "; ".join(str(g["summary"]) for g in guard)
                  or "no change flagged")
        console.print(t)
    c = data.get("communication")
    if isinstance(c, dict):
        _print_communication(c)
    if data.get("trust"):
        _print_trust(data["trust"])


def _print_trust(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    t = Table(title="trust (customers coming back)", show_header=False, box=None)
    for tr in rows:
        lo, hi = tr["ci95"]
        real = tr.get("truth") or {}
        t.add_row(f"{tr['incident_id']}",
                  f"share paying again {tr['estimate']:+.3f} vs comparable customers "
                  f"(95% CI {lo:+.3f} .. {hi:+.3f}, {tr['horizon_minutes']} min, "
                  f"{tr['matched_affected']:,} affected); "
                  f"true {real.get('retention_effect', 0):+.3f}"
                  f"{' covered' if real.get('covered') else ' NOT covered'}")
        t.add_row("", f"lost spending = credit-line use CNY {tr['lost_spending']} "
                      f"(CI {tr['lost_spending_ci'][1]} .. {tr['lost_spending_ci'][0]}); "
                      f"true CNY {real.get('lost_spending', '0.00')}")
        if tr.get("notified_minus_not") is not None:
            nlo, nhi = tr["notified_ci95"]
            t.add_row("", f"notified minus not notified {tr['notified_minus_not']:+.3f} "
                          f"(95% CI {nlo:+.3f} .. {nhi:+.3f}); true "
                          f"{real.get('notified_minus_not') or 0:+.3f}")
    console.print(t)


def _print_communication(c: dict[str, Any]) -> None:
    from rich.table import Table

    def secs(v: object) -> str:
        return f"{float(v) / 60:.1f} min" if isinstance(v, int | float) else "-"

    t = Table(title="response", show_header=False, box=None)
    t.add_row("customers to notify", f"{c['customers_to_notify']:,} "
              f"(affected in paging incidents: {c['affected_customers']:,})")
    t.add_row("notices / follow-ups delivered",
              f"{c['notices_sent']:,} / {c['followups_sent']:,}")
    t.add_row("exactly one notice and one follow-up",
              f"{c['customers_exactly_one_notice_and_followup']:,} of "
              f"{c['customers_to_notify']:,}")
    t.add_row("notified per customer to notify", f"{c['notified_per_affected']:.2f}")
    t.add_row("duplicates (receiver repeats)",
              f"{c['duplicates']} ({c['receiver_repeats']})")
    t.add_row("messages with personal data", str(c["messages_with_personal_data"]))
    t.add_row("messages in quiet hours (not fraud)", str(c["quiet_hour_messages"]))
    t.add_row("messages to a wrong or unknown customer", str(c["unmatched_messages"]))
    t.add_row("partner webhooks (rejected)", f"{c['webhooks_sent']} ({c['webhooks_rejected']})")
    t.add_row("detection -> first notice / webhook",
              f"{secs(c['first_notice_after_detection_s'])} / "
              f"{secs(c['first_webhook_after_detection_s'])}")
    t.add_row("playbook actions done", f"{c['playbook_actions_done']} of "
              f"{c['playbook_actions']}; checklist items open: {c['checklist_items_open']}")
    t.add_row("outbox", ", ".join(f"{k} {v}" for k, v in c["outbox"].items()))
    console.print(t)

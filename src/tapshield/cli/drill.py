"""``tapshield drill``: a game day. Simulate a fault, run the pipeline, grade the response."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tapshield.cli._app import EXIT_OK, UsageError, app, console, friendly
from tapshield.monitor.alerts import AlertEvent


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
    from tapshield.drill import PipelineMissingError, run_drill, score
    from tapshield.incident import read_incidents
    from tapshield.simulate import read_truth

    if truth is not None or incidents is not None:
        if truth is None or incidents is None:
            raise UsageError("grading existing output needs both --truth and --incidents")
        if scenario is not None:
            raise UsageError("give a SCENARIO to run, or --truth/--incidents to grade, not both")
        card = score(read_incidents(incidents), read_truth(truth),
                     alerts=_read_alerts(alerts) if alerts is not None else ())
        data = card.to_dict()
        _print(data, as_json)
        raise typer.Exit(EXIT_OK)
    if scenario is None:
        raise UsageError("which scenario? give a name (tapshield simulate --list) or a YAML file")
    keep = out is not None
    work = out if out is not None else Path(tempfile.mkdtemp(prefix="tapshield-drill-"))
    try:
        with console.status("drill") as status:
            sinks = _audit_sinks(audit_db, f"drill {scenario}")
            result = run_drill(scenario, work, seed=seed, failover=not no_failover,
                               progress=lambda s: status.update(f"drill: {s}"),
                               sinks=sinks,
                               respond=None if no_respond else _responder(respond_db, sinks))
    except PipelineMissingError as exc:
        raise UsageError(str(exc)) from None
    data = result.to_dict()
    _print(data, as_json)
    if not keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _responder(db_url: str | None, sinks: list[object]) -> Any:
    from functools import partial

    from tapshield.comms.drill import respond_in_drill

    log = next((getattr(s, "log", None) for s in sinks if hasattr(s, "log")), None)
    return partial(respond_in_drill, db_url=db_url, audit=log)


def _audit_sinks(url: str | None, run: str) -> list[object]:
    if url is None:
        return []
    from tapshield.audit.log import AuditLog
    from tapshield.audit.sink import AuditSink
    from tapshield.audit.witness import load_signer
    from tapshield.storage import Store
    from tapshield.storage.audit import SqlAuditStore

    log = AuditLog(SqlAuditStore(Store(url).engine), signer=load_signer())
    return [AuditSink(log, run_id=run)]


def _read_alerts(path: Path) -> list[AlertEvent]:
    from tapshield.timeutil import parse_rfc3339

    out: list[AlertEvent] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(AlertEvent(
                alert_id=d["alert_id"], ts=parse_rfc3339(d["ts"]), state=d["state"],
                level=int(d["level"]), started_at=parse_rfc3339(d["started_at"]),
                slice=dict(d.get("slice") or {}), signal=d["signal"],
                notify=bool(d["notify"]), incident_id=d.get("incident_id")))
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path.name} line {n}: not an alert event ({exc})") from None
    return out


def _fmt_scope(scope: list[dict[str, str]] | None) -> str:
    if scope is None:
        return "-"
    return "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in scope) or "all"


def _print(data: dict[str, object], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(data))
        return
    faults = data["faults"]
    assert isinstance(faults, list)
    table = Table(title=f"drill scorecard: {data['scenario']}")
    for col in ("fault", "cause", "must page", "detected", "delay", "cause reported",
                "scope (F1)", "failed payments true / in window / reported", "saved"):
        table.add_column(col, overflow="fold")
    for f in faults:
        if f["must_page"]:
            det = "[green]yes[/]" if f["detected"] else "[red]MISSED[/]"
        else:
            det = "[red]PAGED[/]" if f["detected"] else "[green]quiet[/]"
        delay = f"{f['delay_s'] / 60:.1f} min" if f["delay_s"] is not None else "-"
        cause = f["cause_reported"] or "-"
        if f["cause_right"] is not None:
            cause = f"[green]{cause}[/]" if f["cause_right"] else f"[red]{cause}[/]"
        scope = "-"
        if f["scope_f1"] is not None:
            colour = "green" if f["scope_right"] else "yellow" if f["scope_f1"] > 0 else "red"
            scope = f"[{colour}]{_fmt_scope(f['scope_reported'])} ({f['scope_f1']:.2f})[/]"
        window, reported = f["failed_payments_window"], f["failed_payments_reported"]
        counts = (f"{f['failed_payments_true']:,} / {'-' if window is None else window}"
                  f" / {'-' if reported is None else reported}")
        saved = str(f["saved_by_failover"]) if f["saved_by_failover"] is not None else "-"
        table.add_row(f"{f['fault_id']}\n{_fmt_scope(f['scope_truth'])}", f["cause"],
                      "yes" if f["must_page"] else "no", det, delay, cause, scope, counts, saved)
    console.print(table)
    s = data["summary"]
    assert isinstance(s, dict)
    summary = Table(show_header=False, box=None)
    summary.add_row("detected", f"{s['detected']} of {s['must_page_faults']} must-page faults")
    summary.add_row("median detection delay",
                    f"{s['median_delay_s'] / 60:.1f} min" if s["median_delay_s"] is not None
                    else "-")
    summary.add_row("cause right", f"{s['cause_right']} of {s['detected']} detected")
    summary.add_row("scope right", f"{s['scope_right']} of {s['detected']} detected"
                    + (f" (mean F1 {s['mean_scope_f1']:.2f})" if s["mean_scope_f1"] is not None
                       else ""))
    summary.add_row("false pages", f"{s['false_pages']} incidents, "
                    f"{s['false_alert_pages']} alerts")
    summary.add_row("decoys paged", f"{s['decoys_paged']} of {s['decoys']}")
    if s.get("saved_by_failover") is not None:
        summary.add_row("payments saved by failover", f"{s['saved_by_failover']:,}")
    guard = data.get("misfire_guard")
    if isinstance(guard, list):
        summary.add_row("misfire guard", "; ".join(str(g["summary"]) for g in guard)
                        or "no change flagged")
    console.print(summary)
    c = data.get("communication")
    if isinstance(c, dict):
        _print_communication(c)


def _print_communication(c: dict[str, Any]) -> None:
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
    t.add_row("partner webhooks (rejected)", f"{c['webhooks_sent']} ({c['webhooks_rejected']})")
    t.add_row("detection -> first notice / webhook",
              f"{secs(c['first_notice_after_detection_s'])} / "
              f"{secs(c['first_webhook_after_detection_s'])}")
    t.add_row("playbook actions done", f"{c['playbook_actions_done']} of "
              f"{c['playbook_actions']}; checklist items open: {c['checklist_items_open']}")
    t.add_row("outbox", ", ".join(f"{k} {v}" for k, v in c["outbox"].items()))
    console.print(t)

"""How the command line shows the use cases' outcomes (shared by several commands).

Printing lives here, not in the use cases: ``analyze`` and ``demo`` show an
analysis the same way, ``drill`` and ``demo`` a scorecard.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from tapshield.cli._app import console, esc

if TYPE_CHECKING:
    from tapshield.pipeline import AnalysisResult


def print_summary(result: AnalysisResult, out: Path, *, max_rows: int = 20) -> None:
    """The run in a few lines: what paged, what it cost, where the rest is.

    Notices (level 4) are counted, not listed: a day of traffic has dozens of
    small fraud bursts the risk team sees in the report; the on-call engineer
    reading the terminal needs the incidents that paged.
    """
    from tapshield.levels import LEVEL_NAMES
    from tapshield.money import format_fen

    s = result.summary
    outages = [i for i in result.incidents if i.cause != "fraud_attack"]
    attacks = [i for i in result.incidents if i.cause == "fraud_attack"]
    t = Table(show_header=False, box=None)
    t.add_row("events analysed", f"{s['events']:,}")
    if s.get("late_events"):
        t.add_row("late events", f"{s['late_events']:,}")
    by_level = Counter(i.level for i in result.incidents)
    t.add_row("incidents", f"{s['incidents']} ("
              + ", ".join(f"{by_level[lv]} {LEVEL_NAMES[lv]}" for lv in sorted(by_level))
              + ")" if by_level else "0")
    t.add_row("paging notifications", str(s["notifications"]))
    t.add_row("taps that never succeeded", f"{sum(i.failed_payments for i in outages):,}")
    t.add_row("amount not paid (yuan)", format_fen(sum(i.lost_fen for i in outages)))
    if attacks:
        t.add_row("fraud taps blocked", f"{sum(i.failed_payments for i in attacks):,} in "
                  f"{len(attacks)} attack incident(s), "
                  f"{format_fen(sum(i.lost_fen for i in attacks))} yuan refused")
    fd = s.get("fraud_digest")
    if isinstance(fd, dict):
        t.add_row("blocked fraud (digest)",
                  f"{fd['blocked_attempts']:,} attempts blocked, {format_fen(fd['blocked_fen'])} "
                  f"yuan; {fd['waves']} risk-decline wave(s), {fd['waves_to_incidents']} "
                  "became incidents")
    t.add_row("throughput", f"{s['events_per_second']:,} events/s")
    console.print(t)
    shown = sorted((i for i in result.incidents if i.level <= 3),
                   key=lambda i: (i.level, i.start))[:max_rows]
    if shown:
        it = Table(title="incidents that paged (levels 1-3)", title_justify="left")
        for c in ("id", "level", "start", "detected", "scope", "cause", "failed taps", "lost"):
            it.add_column(c)
        for i in shown:
            d = i.to_dict()
            scope = "; ".join(",".join(f"{k}={v}" for k, v in c.items()) for c in i.scope)
            it.add_row(
                esc(i.id), f"{i.level} {LEVEL_NAMES[i.level]}", esc(d["start"][11:19]),
                esc(d["detected_at"][11:19]), esc(scope) if scope else "everything",
                f"{esc(i.cause)} ({i.confidence:.0%})", f"{i.failed_payments:,}",
                esc(d["lost_amount"]),
            )
        console.print(it)
    notices = [i for i in result.incidents if i.level > 3]
    if notices:
        causes = Counter(i.cause for i in notices)
        console.print(f"{len(notices)} level-4 notice(s) not paged: "
                      + ", ".join(f"{esc(c)} {n}" for c, n in causes.most_common())
                      + f" (all in {esc(out / 'incidents.json')})", highlight=False)
    if isinstance(fd, dict):
        console.print(f"blocked fraud per hour: {esc(out / 'fraud_digest.json')}",
                      highlight=False)
    impact = s.get("impact")
    if isinstance(impact, dict):
        t = Table(title="financing impact", title_justify="left", show_header=False, box=None)
        for k, v in impact.items():
            t.add_row(esc(k.replace("_", " ")), esc(v))
        console.print(t)
    console.print(f"report: {esc(out / 'report.html')}", highlight=False)


def _fmt_scope(scope: list[dict[str, str]] | None) -> str:
    if scope is None:
        return "-"
    return "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in scope) or "all"


def print_scorecard(data: dict[str, Any], as_json: bool = False) -> None:
    """A drill's scorecard (``Scorecard.to_dict()`` / ``DrillResult.to_dict()``)."""
    if as_json:
        console.print_json(json.dumps(data))
        return
    faults = data["faults"]
    assert isinstance(faults, list)
    table = Table(title=f"drill scorecard: {esc(data['scenario'])}")
    for col in ("fault", "cause", "must page", "detected", "delay", "cause reported",
                "scope (F1)", "failed payments true / in window / reported", "saved"):
        table.add_column(col, overflow="fold")
    for f in faults:
        if f["must_page"]:
            det = "[green]yes[/]" if f["detected"] else "[red]MISSED[/]"
        else:
            det = "[red]PAGED[/]" if f["detected"] else "[green]quiet[/]"
        delay = f"{f['delay_s'] / 60:.1f} min" if f["delay_s"] is not None else "-"
        cause = esc(f["cause_reported"] or "-")
        if f["cause_right"] is not None:
            cause = f"[green]{cause}[/]" if f["cause_right"] else f"[red]{cause}[/]"
        scope = "-"
        if f["scope_f1"] is not None:
            colour = "green" if f["scope_right"] else "yellow" if f["scope_f1"] > 0 else "red"
            scope = f"[{colour}]{esc(_fmt_scope(f['scope_reported']))} ({f['scope_f1']:.2f})[/]"
        window, reported = f["failed_payments_window"], f["failed_payments_reported"]
        counts = (f"{f['failed_payments_true']:,} / {'-' if window is None else window}"
                  f" / {'-' if reported is None else reported}")
        saved = str(f["saved_by_failover"]) if f["saved_by_failover"] is not None else "-"
        table.add_row(f"{esc(f['fault_id'])}\n{esc(_fmt_scope(f['scope_truth']))}", esc(f["cause"]),
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
    console.print(summary)

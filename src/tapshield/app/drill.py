"""Run a drill: simulate a scenario, replay it through the pipeline, grade it.

The use case behind ``tapshield drill`` (and the drill part of the demo and
of ``benchmarks/drill_scorecard.py``); grading is pure and lives in
:mod:`tapshield.drill.score`.

This is the game day a payments reliability team runs: the scenario's events
go through exactly what production runs (the events file is read back
through the contract's reader, so the drill also exercises the input path),
the pipeline's incidents and alerts are graded against the truth by
:func:`tapshield.drill.score.score`, and, when the failover router is
available, the scenario's taps are replayed through it and through "no
failover" against the same ground-truth world to count the payments failover
would have saved inside each fault.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from tapshield.app.outputs import OutputDir, StopFlag, until_stopped, write_json_atomic
from tapshield.drill.score import Scorecard, score
from tapshield.errors import ContractError
from tapshield.events.read import EventReader
from tapshield.incident import Incident, read_incidents, scope_expr
from tapshield.monitor.alerts import AlertEvent
from tapshield.pipeline import PipelineConfig, Sink, analyze_frames
from tapshield.simulate import Scenario, World, load_scenario, simulate
from tapshield.simulate.faults import change_rows, changes_frame
from tapshield.simulate.truth import Truth, truth_from_dict

FAILOVER_WARMUP = timedelta(minutes=30)
"""Router history replayed before a fault (it learns channel health as in production)."""
FAILOVER_CAUSES = ("interface", "network", "release")
"""Faults of the path: the ones failing over can help with."""


class Responder(Protocol):
    """The response stage a drill runs after the analysis (an edge adapter provides it)."""

    def __call__(self, incidents: Sequence[Incident], events: pl.DataFrame, out_dir: Path, *,
                 guard_verdicts: Sequence[Mapping[str, Any]] = (),
                 saved_by_failover: Mapping[str, int] | None = None) -> dict[str, Any]: ...


def _changes_risk(changes: pl.DataFrame) -> bool:
    if changes.height == 0 or "kind" not in changes.columns:
        return False
    return changes.filter(pl.col("kind").cast(pl.String) == "rule_change").height > 0


def misfire_verdicts(events: pl.DataFrame, changes: pl.DataFrame) -> list[dict[str, Any]]:
    """The misfire guard over the drill's events in one-minute batches, as live."""
    from tapshield.risk.guard import run_guard

    minute = events["ts"].dt.truncate("1m")
    batches = (b.drop("_m") for _, b in events.with_columns(minute.alias("_m"))
               .group_by("_m", maintain_order=True))
    return [a.to_dict() for a in run_guard(batches, changes)]


def _saved_per_incident(incidents: Sequence[Incident], truth: Truth,
                        fo: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Failover's saved payments, per incident (the paging incident of each fault)."""
    if fo is None:
        return None
    from tapshield.drill.score import assign, pages

    assigned = assign(incidents, truth)
    out: dict[str, int] = {}
    seen: set[str] = set()
    for inc in sorted(incidents, key=lambda i: i.detected_at):
        fid = assigned.get(inc.id)
        if fid is not None and pages(inc) and fid in fo["saved"] and fid not in seen:
            seen.add(fid)
            out[inc.id] = int(fo["saved"][fid])
    return out


@dataclass(slots=True)
class DrillResult:
    scenario: str
    scorecard: Scorecard
    truth: Truth
    out_dir: Path
    events: int
    seconds: dict[str, float] = field(default_factory=dict)
    failover: dict[str, Any] | None = None
    misfire_guard: list[dict[str, Any]] | None = None
    """The risk engine's misfire guard's verdicts, when the scenario changes risk rules."""
    communication: dict[str, Any] | None = None
    """The response's figures (notices, webhooks, playbook steps), when one ran."""
    interrupted: bool = False
    """Stopped by SIGTERM / SIGINT: graded on the events analysed until then."""
    trust: list[dict[str, Any]] | None = None
    """The trust estimate per ended paging incident, beside the simulator's true effect."""

    def to_dict(self) -> dict[str, Any]:
        d = self.scorecard.to_dict()
        d["events"] = self.events
        d["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        d["failover"] = self.failover
        d["misfire_guard"] = self.misfire_guard
        d["communication"] = self.communication
        d["trust"] = self.trust
        d["out_dir"] = str(self.out_dir)
        return d


def saved_by_failover(
    world: World, events: pl.DataFrame, truth: Truth, *, seed: int = 0,
    policy: str = "tapshield",
) -> dict[str, Any] | None:
    """Payments ``policy`` saves against no failover, per path fault, or ``None``
    if the router is not part of this build.

    For each must-page path fault, the taps from ``FAILOVER_WARMUP`` before it
    to its end are replayed under both policies with the same draws; a tap
    counts as saved when it lies in the fault's scope and window.
    """
    from tapshield.route import replay, taps_from_events

    per_fault: dict[str, int] = {}
    detail: dict[str, Any] = {}
    for f in truth.faults:
        if not f.must_page or f.cause not in FAILOVER_CAUSES:
            continue
        window = events.filter((pl.col("ts") >= f.start - FAILOVER_WARMUP)
                               & (pl.col("ts") <= f.end))
        taps = taps_from_events(window)
        if taps.height == 0:
            continue
        inside = taps.filter((pl.col("ts") >= f.start) & scope_expr(f.scope))["payment_id"]
        failed: dict[str, int] = {}
        for name in ("no_failover", policy):
            table = replay(taps, world, name, seed=seed, record=True).tap_table
            assert table is not None
            failed[name] = table.filter(
                pl.col("payment_id").is_in(inside.implode())
                & (pl.col("status") == "failed")
            ).height
        per_fault[f.id] = failed["no_failover"] - failed[policy]
        detail[f.id] = {"taps_in_fault": inside.len(),
                        "failed_without_failover": failed["no_failover"],
                        f"failed_with_{policy}": failed[policy], "saved": per_fault[f.id]}
    return {"policy": policy, "saved": per_fault, "detail": detail}


def trust_in_drill(incidents: Sequence[Incident], events: pl.DataFrame, truth: Truth,
                   sim_dir: Path) -> list[dict[str, Any]]:
    """The trust estimate (:func:`tapshield.respond.trust.trust_impact`) per ended paging
    incident, graded against the simulator's exact effect on the same customers and window.

    *Who was told* is the simulated world's notice log (``churn.parquet``): the
    simulated customers can only have reacted to notices modelled inside the
    simulation (the response stage runs after the whole day was written, and is
    graded on its own in ``communication``). Without a churn model nobody left:
    the true effect is 0 and there is no notice log to compare.
    """
    from tapshield.drill.score import assign, pages
    from tapshield.money import format_fen
    from tapshield.respond.responder import affected_customers
    from tapshield.respond.trust import trust_impact
    from tapshield.simulate.churn import true_effect

    customers = taps = None
    if truth.meta.get("churn") and (sim_dir / "churn.parquet").exists():
        customers = pl.read_parquet(sim_dir / "churn.parquet")
        taps = pl.read_parquet(sim_dir / "churn_taps.parquet")
    notified = (set(customers.filter(pl.col("notified_at").is_not_null())["user_id"].to_list())
                if customers is not None else None)
    assigned = assign(incidents, truth)
    out: list[dict[str, Any]] = []
    for inc in incidents:
        if not pages(inc) or inc.end is None:
            continue
        hit = set(affected_customers(events, inc)["user_id"].to_list())
        t = trust_impact(events, inc, hit, notified=notified)
        if t is None:
            continue
        d = t.to_dict()
        d["fault_id"] = assigned.get(inc.id)
        lo, hi = t.ci95
        if customers is not None and taps is not None and t.after_to is not None:
            assert t.after_from is not None
            eff = true_effect(customers, taps, t.affected_ids, t.after_from, t.after_to)
            told = set(t.notified_ids)
            untold = set(t.affected_ids) - told
            vs = (true_effect(customers, taps, told, t.after_from, t.after_to).effect
                  - true_effect(customers, taps, untold, t.after_from, t.after_to).effect
                  if told and untold else None)
            real: dict[str, Any] = {
                "retention_effect": round(eff.effect, 6), "customers_lost": eff.customers_lost,
                "lost_spending_fen": eff.lost_fen,
                "notified_minus_not": round(vs, 6) if vs is not None else None}
        else:
            real = {"retention_effect": 0.0, "customers_lost": 0, "lost_spending_fen": 0,
                    "notified_minus_not": None}
        real["lost_spending"] = format_fen(int(real["lost_spending_fen"]))
        real["covered"] = lo <= float(real["retention_effect"]) <= hi
        nci = t.notified_ci95
        real["notified_covered"] = (None if nci is None or real["notified_minus_not"] is None
                                    else nci[0] <= float(real["notified_minus_not"]) <= nci[1])
        real["churn_model"] = customers is not None
        d["truth"] = real
        out.append(d)
    return out


def run_drill(
    scenario: Scenario | str | Path,
    out_dir: Path | str,
    *,
    seed: int | None = None,
    failover: bool = True,
    chunk_rows: int = 250_000,
    progress: Callable[[str], None] | None = None,
    sinks: Sequence[Sink] = (),
    respond: Responder | None = None,
    guard: bool = True,
    stop: StopFlag | None = None,
) -> DrillResult:
    """Simulate, analyse, (replay failover,) score; writes ``scorecard.json`` in ``out_dir``.

    ``sinks``: more pipeline sinks (the database, the audit log) beside the files.
    ``respond``: the response stage (``tapshield.comms.drill.respond_in_drill`` or any
    callable of that shape), run on the incidents after the analysis; its figures go
    on the scorecard. ``guard``: run the risk engine's misfire guard over the events
    when the scenario changes risk rules or models.
    ``stop`` (SIGTERM / SIGINT under :func:`~tapshield.app.outputs.graceful_stop`)
    ends the analysis early: the failover replay is skipped and the scorecard,
    graded on what was analysed, says ``"status": "interrupted"``."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    out = Path(out_dir)
    seconds: dict[str, float] = {}

    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    # The scorecard is the drill folder's completion marker: an earlier drill's goes
    # before anything is written, so a drill killed midway never leaves the new
    # analysis beside an old scorecard.
    out.mkdir(parents=True, exist_ok=True)
    (out / "scorecard.json").unlink(missing_ok=True)

    step("simulating")
    t0 = time.perf_counter()
    sim = simulate(sc, out / "simulation", seed=seed, labels=False)
    seconds["simulate"] = time.perf_counter() - t0
    truth = truth_from_dict(sim.truth)
    world = World.from_scenario(sc, seed=seed)
    changes = changes_frame(change_rows(sc, world.traffic, world.faults))

    step("analysing")
    t0 = time.perf_counter()
    reader = EventReader(sim.events_path, chunk_rows=chunk_rows)
    # Staged like ``analyze`` (OutputDir): the analysis folder holds one complete
    # analysis, or the earlier one, never a half-written mix.
    folder = OutputDir(out / "analysis")
    try:
        result = analyze_frames(until_stopped(reader, stop), changes=changes,
                                config=PipelineConfig(), out_dir=folder.staging, sinks=sinks)
        folder.commit()
    finally:
        if not folder.committed:
            folder.abandon()
    seconds["analyse"] = time.perf_counter() - t0

    fo: dict[str, Any] | None = None
    canonical: pl.DataFrame | None = None

    def events() -> pl.DataFrame:
        nonlocal canonical
        if canonical is None:
            canonical = pl.concat(list(EventReader(sim.events_path, chunk_rows=chunk_rows)))
        return canonical

    interrupted = stop is not None and stop()
    if failover and not interrupted and any(
            f.must_page and f.cause in FAILOVER_CAUSES for f in truth.faults):
        step("replaying failover")
        t0 = time.perf_counter()
        fo = saved_by_failover(world, events(), truth, seed=world.seed)
        seconds["failover"] = time.perf_counter() - t0
    verdicts: list[dict[str, Any]] | None = None
    if guard and not interrupted and _changes_risk(changes):
        step("running the misfire guard")
        t0 = time.perf_counter()
        verdicts = misfire_verdicts(events(), changes)
        seconds["guard"] = time.perf_counter() - t0
    comms: dict[str, Any] | None = None
    if respond is not None and not interrupted:
        step("responding")
        t0 = time.perf_counter()
        saved = _saved_per_incident(result.incidents, truth, fo)
        comms = respond(result.incidents, events(), out / "response",
                        guard_verdicts=verdicts or [], saved_by_failover=saved)
        seconds["respond"] = time.perf_counter() - t0
    trust: list[dict[str, Any]] | None = None
    from tapshield.drill.score import pages

    if not interrupted and any(pages(i) and i.end is not None for i in result.incidents):
        step("estimating the trust impact")
        t0 = time.perf_counter()
        trust = trust_in_drill(result.incidents, events(), truth, out / "simulation")
        seconds["trust"] = time.perf_counter() - t0
    card = score(result.incidents, truth, alerts=result.alerts,
                 saved_by_failover=fo["saved"] if fo is not None else None)
    drill = DrillResult(sc.name, card, truth, out, sim.events, seconds, fo, verdicts, comms,
                        trust=trust)
    doc = drill.to_dict()
    doc["status"] = "interrupted" if interrupted else "complete"
    drill.interrupted = interrupted
    write_json_atomic(out / "scorecard.json", doc)
    return drill


def read_alerts(path: Path) -> list[AlertEvent]:
    """An ``alerts.jsonl`` written by an analysis, back as alert events."""
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
            raise ContractError(f"{path.name} line {n}: not an alert event ({exc})") from None
    return out


def grade(truth: Path, incidents: Path, alerts: Path | None = None) -> Scorecard:
    """Grade existing output (``incidents.json``, optionally ``alerts.jsonl``) against
    a simulator's ``truth.json``."""
    from tapshield.simulate import read_truth

    return score(read_incidents(incidents), read_truth(truth),
                 alerts=read_alerts(alerts) if alerts is not None else ())

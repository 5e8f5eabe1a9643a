"""``diagnose()``: scope, cause, confidence and evidence for one failure wave.

Called by the pipeline the moment an alert fires (and again when it
escalates) with the recent events and the changes. The steps:

1. cut the events into the anomalous bucket ``[start, now]`` and baseline
   buckets of the same length (:func:`~tapshield.diagnose.events.bucketed`);
2. pick the failure signature from the monitor's signal (a ``decline`` wave
   made of risk declines is treated as one);
3. screen the dimensions and localise the wave on the cube of the survivors
   (:func:`~tapshield.diagnose.localizer.localize_cube`); the root causes are
   the scope (``{}`` = everything, no root cause found = where monitoring fired);
4. gather the facts inside the scope and classify
   (:mod:`~tapshield.diagnose.classify`);
5. for an attack, say *where* it hits (region, merchant, channel): the device
   attributes of an attacker's phones are a fingerprint for the evidence, not
   a slice of the flow to fail over from or to count.

Pure function of its inputs; its speed is measured in
``benchmarks/diagnose_speed.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.stats import chi2

from tapshield.diagnose.classify import classify, sentences
from tapshield.diagnose.events import (
    ALL_DIMS,
    MATERIAL,
    MAX_DIMS,
    SCREEN_ALPHA,
    DimCodes,
    bucketed,
    event_cube,
    screen_dims,
    signature_expr,
    slow_threshold,
    volume_cube,
)
from tapshield.diagnose.evidence import Facts, gather
from tapshield.diagnose.localizer import Localization, LocalizeConfig, localize_cube
from tapshield.diagnose.types import Diagnosis, DiagnosisRequest, Failure
from tapshield.signals import Signal

SIGNATURE_OF_SIGNAL: dict[Signal, str] = {
    "technical": "technical",
    "decline": "decline",
    "risk_decline": "risk_decline",
    "latency": "slow",
    "traffic_drop": "volume",
}

FAILURE_OF_SIGNATURE: dict[str, Failure] = {
    "technical": "technical",
    "slow": "technical",
    "volume": "technical",
    "risk_decline": "risk_decline",
    "decline": "decline",
}

WHERE_DIMS: tuple[str, ...] = ("region", "merchant_id", "merchant_category", "channel")
"""Dimensions that say where an attack hits the flow (as opposed to what the
attacker's phones look like)."""

MAIN = "_f_main"

PIPELINE_CONFIG = LocalizeConfig(materiality=MATERIAL)
"""The localiser as an incident's diagnosis uses it: its materiality is the screen's
(:data:`~tapshield.diagnose.events.MATERIAL`, 5%), not the 2% of a bare count table.
An incident page names where to look first, and on the simulator's scenario library
2% adds background fraud in other regions to a device farm's scope (scope F1 0.976
-> 0.930, ``benchmarks/diagnose_scenarios.py --materiality 0.02``): slices a person
should not be paged about (issue 15: no page on an untouched slice)."""


def diagnose(request: DiagnosisRequest, config: LocalizeConfig | None = None) -> Diagnosis:
    """Where the wave is, whose fault it is, how sure, and why (see module docstring)."""
    fired = [dict(request.fired_slice)] if request.fired_slice else []
    signature = SIGNATURE_OF_SIGNAL.get(request.signal, "technical")
    events = request.events
    if events.height == 0:
        return Diagnosis(scope=fired, cause="unknown", confidence=0.0,
                         evidence=["no events in the diagnosis window"],
                         failure=FAILURE_OF_SIGNATURE[signature])
    frame, history = bucketed(events, request.start, request.now, request.baseline_start)
    slow_ms = slow_threshold(frame, request.start) if signature == "slow" else None
    if signature == "decline" and _risk_dominates(frame):
        signature = "risk_decline"
    signatures = {
        "technical": signature_expr("technical"),
        "risk_decline": signature_expr("risk_decline"),
        "decline": signature_expr("decline"),
        "slow": signature_expr("slow", slow_ms),
    }
    dims = [d for d in ALL_DIMS if d in frame.columns]
    keep = [d for d in request.fired_slice if d in dims]
    coded = DimCodes(frame)
    loc = _localize(frame, signature, signatures, dims, keep, history, config, coded)
    scope, explained = _scope(loc, fired)
    fact_sig = signature if signature != "volume" else "technical"

    def facts_for(where: list[dict[str, str]]) -> Facts:
        f = gather(frame, where, signature=fact_sig, signatures=signatures,
                   changes=request.changes, start=request.start, now=request.now,
                   history=history)
        if signature == "volume":
            f.signature = "volume"
        return f

    facts = facts_for(scope)
    verdict = classify(facts)
    if verdict.cause == "fraud_attack" and scope and not _only(scope, WHERE_DIMS):
        where = [d for d in WHERE_DIMS if d in dims]
        relocated = _localize(frame, signature, signatures, where, [], history, config, coded)
        new_scope, new_explained = _scope(relocated, [])
        if relocated is not None and relocated.root_causes:
            fingerprint = facts.fingerprint or {
                d: (v, 1.0) for combo in scope for d, v in combo.items() if d not in WHERE_DIMS}
            scope, explained = new_scope, new_explained
            facts = facts_for(scope)
            facts.fingerprint = facts.fingerprint or fingerprint
    evidence = sentences(facts, scope, verdict, explained)
    if loc is None or not loc.root_causes:
        where_fired = (", ".join(f"{k}={v}" for k, v in request.fired_slice.items())
                       or "the whole flow")
        evidence.insert(1, "no narrower slice stands out; scope is where monitoring fired "
                           f"({where_fired})")
    return Diagnosis(scope=scope, cause=verdict.cause, confidence=verdict.confidence,
                     evidence=evidence, failure=FAILURE_OF_SIGNATURE[signature])


def _localize(frame: pl.DataFrame, signature: str, signatures: dict[str, pl.Expr],
              dims: Sequence[str], keep: Sequence[str], history: int,
              config: LocalizeConfig | None, coded: DimCodes | None = None
              ) -> Localization | None:
    if signature == "volume":
        chosen = _screen_volume(frame, dims, keep, history)
        cube = volume_cube(frame, chosen, history) if chosen else None
    else:
        work = frame.with_columns(signatures[signature].fill_null(False).alias(MAIN))
        coded = coded or DimCodes(frame)
        chosen = screen_dims(work, MAIN, dims, keep, coded)
        cube = event_cube(work, MAIN, chosen, coded) if chosen else None
    if cube is None or cube.leaves == 0:
        return None
    return localize_cube(cube, config or PIPELINE_CONFIG)


def _scope(loc: Localization | None, fallback: list[dict[str, str]]
           ) -> tuple[list[dict[str, str]], float | None]:
    if loc is None or not loc.root_causes:
        return fallback, None
    if any(not c for c in loc.combinations):
        return [], loc.explained_share
    return loc.combinations, loc.explained_share


def _only(scope: list[dict[str, str]], dims: Sequence[str]) -> bool:
    return all(d in dims for combo in scope for d in combo)


def _risk_dominates(frame: pl.DataFrame) -> bool:
    """Is the extra decline volume mostly risk declines (59 / risk_decision=decline)?"""
    now = pl.col("_bucket") == 0
    sums = frame.select(
        now.sum().alias("n"), (~now).sum().alias("nb"),
        (signature_expr("risk_decline").fill_null(False) & now).sum().alias("r"),
        (signature_expr("risk_decline").fill_null(False) & ~now).sum().alias("rb"),
        (signature_expr("decline").fill_null(False) & now).sum().alias("d"),
        (signature_expr("decline").fill_null(False) & ~now).sum().alias("db"),
    ).row(0, named=True)
    if not sums["n"] or not sums["nb"]:
        return False
    scale = sums["n"] / sums["nb"]
    risk = sums["r"] - scale * sums["rb"]
    other = sums["d"] - scale * sums["db"]
    return bool(risk > max(other, 0.0))


def _screen_volume(frame: pl.DataFrame, dims: Sequence[str], keep: Sequence[str],
                   history: int) -> list[str]:
    """Dimensions with a value whose traffic fell far below its usual level.

    Poisson log-likelihood ratio of the drop of each value (observed below its
    mean over the history buckets), Bonferroni over all values at the screen's
    level.
    """
    now = pl.col("_bucket") == 0
    tables = pl.collect_all([
        frame.lazy().group_by(d, maintain_order=True)
        .agg(now.sum().alias("n"), (~now).sum().alias("nb"))
        for d in dims
    ])
    scores: dict[str, float] = {}
    tests = 0
    for d, t in zip(dims, tables, strict=True):
        tests += t.height
        exp = (t.get_column("nb").cast(pl.Float64) / max(history, 1)).to_numpy()
        obs = t.get_column("n").cast(pl.Float64).to_numpy()
        drop = obs < exp
        if not drop.any():
            scores[d] = 0.0
            continue
        o, e = obs[drop], exp[drop]
        with_obs = o > 0
        llr = e - o
        llr[with_obs] += o[with_obs] * np.log(o[with_obs] / e[with_obs])
        scores[d] = float(llr.max())
    crit = float(chi2.isf(SCREEN_ALPHA / max(tests, 1), 1)) / 2.0
    chosen = [d for d in sorted(scores, key=lambda k: -scores[k]) if scores[d] >= crit]
    chosen = chosen[:MAX_DIMS]
    for d in keep:
        if d not in chosen:
            chosen.append(d)
    return chosen

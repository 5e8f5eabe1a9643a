"""Ground truth: what each fault really did, counted while the events are made.

Counting rules (the same as :func:`tapshield.incident.measure`, so a perfect
pipeline reports exactly these figures):

* ``failed_attempts``: attempts the fault changed (``fault_id`` = the fault:
  without the fault that attempt would have gone through its stage);
* ``failed_payments``: taps (``payment_id``) with at least one such attempt
  and **no approved attempt at all** (a tap rescued by a retry or by switching
  method is not lost); a tap hit by two faults counts for both;
* ``affected_users`` / ``affected_merchants``: distinct customers / merchants
  of those failed payments;
* ``lost_amount``: the sum of their amounts (each tap once), exact decimal yuan.
  For a ``fraud_attack`` this is the attack's blocked amount: money the risk
  engine rightly refused, not sales lost.

``window`` holds what ``measure`` reports for the fault's exact scope and time
window with its failure signature (technical failures, risk declines or
declines), background failures included: the figure an incident that got the
scope and the window exactly right would carry. ``rates`` are the true failure
rates of the signature inside the scope during the fault and in the hour (at
most the fault's length) before it: what an oracle detector would compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tapshield.events.codes import TECHNICAL_CODES
from tapshield.money import format_fen
from tapshield.simulate.clock import FestivalWindow
from tapshield.simulate.faults import Arrays, CompiledFault, scope_mask
from tapshield.simulate.world import APPROVED, DECLINED, R_DECLINE, World
from tapshield.timeutil import DEFAULT_TZ, epoch_us, from_epoch_us, parse_rfc3339, to_rfc3339

TRUTH_VERSION = "1.0"
BASELINE_MAX = timedelta(hours=1)


@dataclass(slots=True)
class Counts:
    failed_attempts: int = 0
    failed_payments: int = 0
    users: set[int] = field(default_factory=set)
    merchants: set[int] = field(default_factory=set)
    lost_fen: int = 0

    def add(self, sel: np.ndarray, a: Arrays, ok_tap: np.ndarray, taps: Arrays) -> None:
        self.failed_attempts += int(sel.sum())
        if not sel.any():
            return
        hit = np.unique(a["tap"][sel])
        lost = hit[~ok_tap[hit]]
        self.failed_payments += int(lost.size)
        self.users.update(taps["user"][lost].tolist())
        self.merchants.update(taps["merchant"][lost].tolist())
        self.lost_fen += int(taps["amount"][lost].sum())

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed_attempts": self.failed_attempts,
            "failed_payments": self.failed_payments,
            "affected_users": len(self.users),
            "affected_merchants": len(self.merchants),
            "lost_amount": format_fen(self.lost_fen),
        }


@dataclass(slots=True)
class _Acc:
    fault: CompiledFault | None
    caused: Counts = field(default_factory=Counts)
    window: Counts = field(default_factory=Counts)
    during: int = 0
    during_bad: int = 0
    before: int = 0
    before_bad: int = 0


def signature_mask(signature: str, a: Arrays, codes: list[str]) -> np.ndarray:
    """Attempts carrying a failure signature (as the incident contract counts them)."""
    out = a["outcome"]
    if signature == "technical":
        tech_codes = np.asarray([i for i, c in enumerate(codes) if c in TECHNICAL_CODES])
        return np.asarray((out >= 2) | ((out == DECLINED) & np.isin(a["code"], tech_codes)))
    if signature == "risk_decline":
        return np.asarray((out == DECLINED) & ((a["code"] == codes.index("59"))
                                               | (a["risk"] == R_DECLINE)))
    if signature == "decline":
        tech_codes = np.asarray([i for i, c in enumerate(codes) if c in TECHNICAL_CODES])
        return np.asarray((out == DECLINED) & ~np.isin(a["code"], tech_codes))
    return np.zeros(out.size, dtype=bool)


class TruthAccumulator:
    """Adds up the truth block by block (see the module docstring for the rules)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.accs = [_Acc(f) for f in world.faults]
        self.festival = _Acc(None) if world.festival is not None else None
        self.events = 0
        self.payments = 0
        self.approved_payments = 0
        self.double_charged = 0
        self.fraud_taps = 0
        self.fraud_approved_fen = 0

    def add(self, a: Arrays, n_taps: int) -> None:
        w = self.world
        codes = w.vocab.codes
        tap = a["tap"]
        ok_tap = np.bincount(tap, weights=(a["outcome"] == APPROVED), minlength=n_taps) > 0
        auth = np.bincount(tap, weights=a["authorised"], minlength=n_taps)
        taps = {k: a[k][:n_taps] for k in ("user", "merchant", "amount", "fraud")}
        self.events += int(tap.size)
        self.payments += n_taps
        self.approved_payments += int(ok_tap.sum())
        self.double_charged += int((auth >= 2).sum())
        fraud = taps["fraud"] > 0
        self.fraud_taps += int(fraud.sum())
        self.fraud_approved_fen += int(taps["amount"][fraud & ok_tap].sum())
        ts = a["ts"]
        for acc in self.accs:
            f = acc.fault
            assert f is not None
            acc.caused.add(a["fault"] == f.index, a, ok_tap, taps)
            inside = scope_mask(f.scope, a, w.vocab)
            sig = signature_mask(f.signature, a, codes)
            during = inside & (ts >= f.start_us) & (ts <= f.end_us)
            acc.window.add(during & sig, a, ok_tap, taps)
            base_us = int(min(BASELINE_MAX, f.end - f.start).total_seconds() * 1e6)
            before = inside & (ts >= f.start_us - base_us) & (ts < f.start_us)
            acc.during += int(during.sum())
            acc.during_bad += int((during & sig).sum())
            acc.before += int(before.sum())
            acc.before_bad += int((before & sig).sum())
        if self.festival is not None and w.festival is not None:
            fw = w.festival
            during = (ts >= fw.start_us) & (ts < fw.end_us)
            base_us = min(int(BASELINE_MAX.total_seconds() * 1e6), fw.end_us - fw.start_us)
            self.festival.during += int(during.sum())
            self.festival.before += int(((ts >= fw.start_us - base_us) & (ts < fw.start_us)).sum())

    # -- output --------------------------------------------------------------------------

    def to_dict(self, tz: str = DEFAULT_TZ) -> dict[str, Any]:
        w = self.world
        sc = w.scenario
        faults = [self._fault(acc, tz) for acc in self.accs]
        if self.festival is not None and w.festival is not None:
            faults.append(self._festival(w.festival, self.festival, tz))
        return {
            "schema_version": TRUTH_VERSION,
            "scenario": sc.name,
            "description": sc.description,
            "seed": w.seed,
            "start": to_rfc3339(sc.start_ts, tz),
            "end": to_rfc3339(sc.end_ts, tz),
            "events": self.events,
            "payments": self.payments,
            "approved_payments": self.approved_payments,
            "double_charged_payments": self.double_charged,
            "fraud_taps": self.fraud_taps,
            "fraud_approved_amount": format_fen(self.fraud_approved_fen),
            "counting": __doc__.split("Counting rules")[1].strip() if __doc__ else "",
            "faults": faults,
        }

    def _fault(self, acc: _Acc, tz: str) -> dict[str, Any]:
        f = acc.fault
        assert f is not None
        codes = [self.world.vocab.codes[c] for c in f.codes.tolist()]
        signal = {"technical": "technical", "risk_decline": "risk_decline",
                  "decline": "decline"}[f.signature]
        out: dict[str, Any] = {
            "id": f.id,
            "cause": f.cause,
            "decoy": f.kind in ("maintenance", "small_merchant"),
            "must_page": f.must_page,
            "scope": [dict(sorted(c.items())) for c in f.scope],
            "start": to_rfc3339(f.start, tz),
            "end": to_rfc3339(f.end, tz),
            **acc.caused.as_dict(),
            "window": acc.window.as_dict(),
            "rates": _rates(acc),
            "signature": {"failure": f.signature, "signal": signal, "codes": codes,
                          **self._signature_extra(f)},
            "note": f.note,
        }
        return out

    def _signature_extra(self, f: CompiledFault) -> dict[str, Any]:
        extra: dict[str, Any] = {"peak_rate": f.peak}
        if f.ramp_up_us or f.ramp_down_us:
            extra["ramp_up_s"] = f.ramp_up_us / 1e6
            extra["ramp_down_s"] = f.ramp_down_us / 1e6
        if f.flap_period_us:
            extra["flapping"] = {"period_s": f.flap_period_us / 1e6, "duty": f.flap_duty}
        if f.kind == "interface":
            extra["timeout_share"] = f.timeout_share
            extra["traffic_share"] = f.share
        if f.kind == "network":
            extra["latency_factor"] = f.latency_factor
        if f.kind == "release":
            extra["target"] = f.target
            if f.target == "app":
                extra["rollout_max"] = f.rollout_max
                extra["rollout_s"] = f.rollout_us / 1e6
            else:
                extra["traffic_share"] = f.share
        if f.kind == "fraud_attack":
            extra["pattern"] = f.pattern
            extra["new_devices"] = True
            extra["new_accounts"] = f.pattern != "account_takeover"
        if f.kind == "maintenance":
            extra["announced"] = True
        return extra

    def _festival(self, fw: FestivalWindow, acc: _Acc, tz: str) -> dict[str, Any]:
        minutes = (fw.end_us - fw.start_us) / 60e6
        base_min = min(60.0, minutes)
        return {
            "id": "festival",
            "cause": "festival",
            "decoy": True,
            "must_page": False,
            "scope": [],
            "start": to_rfc3339(from_epoch_us(fw.start_us), tz),
            "end": to_rfc3339(from_epoch_us(fw.end_us), tz),
            **Counts().as_dict(),
            "window": Counts().as_dict(),
            "rates": {"during": None, "before": None, "during_attempts": acc.during,
                      "before_attempts": acc.before,
                      "during_attempts_per_minute": round(acc.during / max(minutes, 1e-9), 2),
                      "before_attempts_per_minute": round(acc.before / max(base_min, 1e-9), 2)},
            "signature": {"failure": "none", "signal": "traffic", "codes": [],
                          "multiplier": fw.multiplier, "latency_factor": fw.latency_factor},
            "note": fw.name,
        }


def _rates(acc: _Acc) -> dict[str, Any]:
    return {
        "during": round(acc.during_bad / acc.during, 6) if acc.during else None,
        "before": round(acc.before_bad / acc.before, 6) if acc.before else None,
        "during_attempts": acc.during,
        "before_attempts": acc.before,
    }


# -- reading truth back (for drills) ------------------------------------------------------


@dataclass(slots=True)
class FaultTruth:
    id: str
    cause: str
    must_page: bool
    scope: list[dict[str, str]]
    start: datetime
    end: datetime
    failed_attempts: int
    failed_payments: int
    affected_users: int
    affected_merchants: int
    lost_fen: int
    decoy: bool = False
    window_failed_payments: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Truth:
    scenario: str
    start: datetime
    end: datetime
    faults: list[FaultTruth]
    meta: dict[str, Any] = field(default_factory=dict)


def _fen(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def truth_from_dict(d: dict[str, Any]) -> Truth:
    faults = []
    for f in d.get("faults", []):
        window = f.get("window") or {}
        faults.append(FaultTruth(
            id=str(f["id"]), cause=str(f["cause"]), must_page=bool(f["must_page"]),
            scope=[dict(c) for c in f.get("scope", [])],
            start=parse_rfc3339(f["start"]), end=parse_rfc3339(f["end"]),
            failed_attempts=int(f.get("failed_attempts", 0)),
            failed_payments=int(f.get("failed_payments", 0)),
            affected_users=int(f.get("affected_users", 0)),
            affected_merchants=int(f.get("affected_merchants", 0)),
            lost_fen=_fen(str(f.get("lost_amount", "0.00"))),
            decoy=bool(f.get("decoy", not f["must_page"])),
            window_failed_payments=window.get("failed_payments"),
            extra={k: v for k, v in f.items() if k in ("signature", "rates", "window", "note")},
        ))
    meta = {k: v for k, v in d.items() if k != "faults"}
    return Truth(scenario=str(d.get("scenario", "")), start=parse_rfc3339(d["start"]),
                 end=parse_rfc3339(d["end"]), faults=faults, meta=meta)


def read_truth(path: Path | str) -> Truth:
    """Load a ``truth.json`` written by :func:`tapshield.simulate.simulate`; a file
    that is not one is a one-line :class:`ContractError` naming what is missing."""
    from tapshield.errors import ContractError
    from tapshield.incident import first_line, read_json_file

    d = read_json_file(path, "a truth file")
    if not isinstance(d, dict) or not isinstance(d.get("faults", []), list):
        raise ContractError(f"{Path(path).name}: a truth file is a JSON object with 'faults'")
    try:
        return truth_from_dict(d)
    except KeyError as exc:
        raise ContractError(
            f"{Path(path).name}: not a valid truth file (missing {first_line(exc)})") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ContractError(
            f"{Path(path).name}: not a valid truth file ({first_line(exc)})") from None


def write_truth(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


__all__ = [
    "FaultTruth",
    "Truth",
    "TruthAccumulator",
    "epoch_us",
    "read_truth",
    "truth_from_dict",
    "write_truth",
]

"""Whose fault: interface, network, risk control, fraud attack, release, or unknown.

The classifier is a small evidence model a reviewer can audit line by line.
Each fact (see :mod:`tapshield.diagnose.evidence`) adds a weight of evidence
(a log-likelihood ratio, in nats) to the causes it supports; the weights are
set from how the fault kinds behave, not fitted to a test set:

* ``STRONG = 2.5`` (a likelihood ratio of about 12): facts that almost only
  one cause produces: the scope *is* a carrier (network), a channel
  (interface), a software version (release); a matching deploy or a risk-rule
  change shortly before; risk declines concentrated on a few devices firing
  fast (attack).
* ``MODERATE = 1.0`` (about 3x): facts that lean one way: codes of the path
  (68 / 92, timeouts) versus codes of a host (91 / 96); a wave that cuts across
  channels (network) or across carriers (interface); a version whose share of
  traffic jumped; many accounts per device; tiny amounts.
* ``WEAK = 0.5``: supporting colour (latency doubled, a merchant-level scope).

Only the causes of the failure family apply (technical failures: interface,
network, release; risk declines: risk control, fraud attack). The posterior is
a softmax of the summed weights together with an ``unknown`` alternative
scored :data:`UNKNOWN_SCORE`; the decision rule is to name the cause with the
highest posterior if it is at least :data:`DECIDE` and the wave is not thin
(its failures could be chance: Poisson upper tail above :data:`THIN_P`; or a lift under
:data:`MIN_LIFT`), and ``unknown`` otherwise. The posterior is the confidence;
its calibration is measured in ``benchmarks/diagnose_scenarios.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy.stats import poisson

from tapshield.diagnose.evidence import (
    LOOKBACK,
    Facts,
    describe_code,
    is_host_code,
    is_network_code,
)
from tapshield.diagnose.types import Cause

STRONG = 2.5
MODERATE = 1.0
WEAK = 0.5

UNKNOWN_SCORE = 1.5
"""Score of "unknown": a cause must gather more than one strong fact (or several
moderate ones) beyond its rivals before it outweighs not knowing."""

DECIDE = 0.5
"""Name a cause only if it is more likely than everything else together."""

THIN_P = 1e-3
"""A wave whose failures the baseline would produce with probability above 0.1%
(one-sided Poisson tail) is too thin to name a cause. A count, not a fixed number
of failures: six timeouts where 0.05 were expected are a wave, ten where eight
were expected are not."""

MIN_LIFT = 1.5
"""A failure ratio up by less than half is too weak a signal to classify."""

VERSION_DIMS = frozenset({"app_version", "server_version"})
SEGMENT_DIMS = frozenset({"device_model", "app_version", "os", "region", "carrier", "channel",
                          "merchant_category", "server_version"})

FAMILY: dict[str, tuple[Cause, ...]] = {
    "technical": ("interface", "network", "release"),
    "slow": ("interface", "network", "release"),
    "volume": ("interface", "network", "release"),
    "risk_decline": ("risk_control", "fraud_attack"),
    "decline": ("interface", "risk_control"),
}


Credit = Callable[[str, float, str], None]


@dataclass(frozen=True, slots=True)
class Verdict:
    cause: Cause
    confidence: float
    posterior: dict[str, float]
    reasons: dict[str, list[str]]


def classify(facts: Facts) -> Verdict:
    """The cause, its posterior, and the facts each cause was credited with."""
    family = FAMILY.get(facts.signature, FAMILY["technical"])
    scores: dict[str, float] = dict.fromkeys(family, 0.0)
    reasons: dict[str, list[str]] = {c: [] for c in family}

    def credit(cause: str, weight: float, why: str) -> None:
        if cause in scores:
            scores[cause] += weight
            reasons[cause].append(why)

    dims = facts.scope_dims
    if facts.signature in ("technical", "slow", "volume", "decline"):
        _technical(facts, dims, credit)
    if facts.signature in ("risk_decline", "decline"):
        _risk(facts, dims, credit)

    logits = dict(scores)
    logits["unknown"] = UNKNOWN_SCORE
    top = max(logits.values())
    expw = {c: math.exp(s - top) for c, s in logits.items()}
    z = sum(expw.values())
    posterior = {c: w / z for c, w in expw.items()}
    best = max(scores, key=lambda c: scores[c])
    main = facts.main()
    chance = float(poisson.sf(main.failed - 1, max(main.expected, 1e-9))) if main.failed else 1.0
    thin = facts.signature != "volume" and (chance > THIN_P or main.lift < MIN_LIFT)
    if facts.signature == "volume":
        thin = facts.volume_drop < 0.2
    if posterior[best] >= DECIDE and not thin:
        return Verdict(best, round(posterior[best], 4), posterior, reasons)  # type: ignore[arg-type]
    return Verdict("unknown", round(max(posterior["unknown"], 1 - posterior[best]), 4),
                   posterior, reasons)


def _technical(facts: Facts, dims: set[str], credit: Credit) -> None:
    if "channel" in dims:
        credit("interface", STRONG, "the scope is a channel")
    if "carrier" in dims:
        credit("network", STRONG, "the scope is a mobile carrier")
    elif "region" in dims and "channel" not in dims:
        credit("network", MODERATE, "the scope is a region on every channel")
    if dims & VERSION_DIMS:
        credit("release", STRONG, "the scope is a software version")
    deploys = [c for c in facts.changes if c.kind in ("deploy", "config") and c.matches_scope
               and c.component in ("app", "gateway")]
    if deploys:
        credit("release", STRONG, "a deploy of that version just before")
    if facts.new_versions:
        credit("release", MODERATE, "that version's share of traffic jumped")
    ch_up, ch_n = facts.spread.get("channel", (0, 0))
    if ch_up >= 2 and ch_up >= 0.5 * ch_n:
        credit("network", MODERATE, "it cuts across channels")
    ca_up, ca_n = facts.spread.get("carrier", (0, 0))
    if ca_up >= 2 and ca_up >= 0.5 * ca_n:
        credit("interface", MODERATE, "it cuts across carriers")
    net = sum(s for c, s in facts.codes if is_network_code(c))
    host = sum(s for c, s in facts.codes if is_host_code(c))
    if max(net, facts.timeout_share) >= 0.5:
        credit("network", MODERATE, "the extra failures are timeouts")
    elif host >= 0.5:
        credit("interface", MODERATE, "the extra failures are host errors")
        credit("release", WEAK, "the extra failures are host errors")
    if (facts.latency_now is not None and facts.latency_base
            and facts.latency_now >= 2 * facts.latency_base):
        credit("network", WEAK, "latency doubled")
    channel_cfg = [c for c in facts.changes if c.kind == "config" and c.matches_scope
                   and c.component.startswith("channel:")]
    if channel_cfg:
        credit("interface", MODERATE, "a configuration change of that channel just before")
    if any(m.matches_scope for m in facts.maintenance):
        credit("interface", STRONG, "an announced maintenance window of that channel")


def _risk(facts: Facts, dims: set[str], credit: Credit) -> None:
    rules = [c for c in facts.changes if c.kind == "rule_change"]
    if rules:
        credit("risk_control", STRONG, "a risk-rule change just before")
    else:
        credit("fraud_attack", WEAK, "no risk-rule change before it")
    fr = facts.fraud
    if fr:
        concentrated = fr.get("top5_share", 0.0) >= 0.3 or fr.get("per_device", 0.0) >= 3.0
        if concentrated:
            credit("fraud_attack", STRONG, "declines concentrated on a few devices")
        elif fr.get("declines", 0.0) >= 20:
            credit("risk_control", MODERATE, "declines spread over many ordinary customers")
        if fr.get("accounts_per_device", 0.0) >= 2.0:
            credit("fraud_attack", MODERATE, "several accounts per device")
        if fr.get("small_amount_share", 0.0) >= 0.5:
            credit("fraud_attack", MODERATE, "mostly tiny amounts (card testing)")
    if "merchant_id" in dims:
        credit("fraud_attack", WEAK, "the scope is one merchant")
    elif dims and dims <= SEGMENT_DIMS:
        credit("risk_control", WEAK, "the scope is a customer segment")


def sentences(facts: Facts, scope: list[dict[str, str]], verdict: Verdict,
              explained: float | None) -> list[str]:
    """Evidence a person can check, most telling first."""
    out: list[str] = []
    m = facts.main()
    label = {"technical": "technical failures", "risk_decline": "risk declines",
             "decline": "declines", "slow": "slow or failed attempts",
             "volume": "missing attempts"}.get(facts.signature, facts.signature)
    minutes = max(facts.duration.total_seconds() / 60, 1)
    if facts.signature == "volume":
        out.append(f"traffic {facts.volume_drop:.0%} below its usual level over "
                   f"{minutes:.0f} min")
    else:
        out.append(
            f"{m.failed:,}/{m.total:,} {label} in {minutes:.0f} min: {m.ratio:.1%} vs "
            f"{m.base_ratio:.1%} before ({m.lift:.1f}x, {max(m.excess, 0):,.0f} extra)"
        )
    where = "everywhere" if not scope else "only " + " or ".join(
        ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for c in scope)
    cut = []
    for dim, word in (("channel", "channels"), ("carrier", "carriers"), ("region", "regions")):
        up, n = facts.spread.get(dim, (0, 0))
        if n >= 2 and dim not in facts.scope_dims:
            cut.append(f"{up}/{n} {word} up")
    share = f"; holds {explained:.0%} of the extra failures" if explained is not None else ""
    out.append(where + (f" ({', '.join(cut)})" if cut else "") + share)
    if facts.codes:
        top = ", ".join(f"{describe_code(c)} {s:.0%}" for c, s in facts.codes[:3])
        out.append(f"extra failures by code: {top}")
    if facts.latency_now is not None and facts.latency_base is not None:
        out.append(f"median latency {facts.latency_now:,.0f} ms vs "
                   f"{facts.latency_base:,.0f} ms before")
    if facts.changes:
        for c in facts.changes[:3]:
            when = (f"{c.minutes_before:.0f} min before the start" if c.minutes_before >= 0
                    else f"{-c.minutes_before:.0f} min after the start")
            tag = " (matches the scope)" if c.matches_scope else ""
            ver = f" {c.version}" if c.version else ""
            out.append(f"{c.kind} {c.component}{ver} {when}{tag}")
    else:
        hours = LOOKBACK.total_seconds() / 3600
        out.append(f"no deploy, config or rule change in the {hours:g} h before")
    for mw in facts.maintenance:
        if mw.matches_scope:
            out.append(f"inside an announced maintenance window of {mw.component}")
    fr = facts.fraud
    if fr and facts.signature in ("risk_decline", "decline"):
        out.append(
            f"risk declines: {fr['declines']:.0f} from {fr['devices']:.0f} devices "
            f"({fr['per_device']:.1f} per device, {fr['accounts_per_device']:.1f} accounts per "
            f"device, top 5 devices {fr['top5_share']:.0%}, tiny amounts "
            f"{fr['small_amount_share']:.0%})"
        )
    if facts.fingerprint:
        out.append("the declined phones look alike: " + ", ".join(
            f"{d} {v} ({share:.0%})" for d, (v, share) in facts.fingerprint.items()))
    if facts.new_versions:
        out.append("share of traffic jumped for " + ", ".join(facts.new_versions))
    if verdict.cause != "unknown":
        why = "; ".join(verdict.reasons.get(verdict.cause, []))
        out.append(f"{verdict.cause} ({verdict.confidence:.0%}): {why}")
    else:
        ranked = sorted(((p, name) for name, p in verdict.posterior.items()
                         if name != "unknown"), reverse=True)
        if ranked:
            p, name = ranked[0]
            out.append(f"cause unknown: best guess {name} at {p:.0%}, not enough to name it")
    return out

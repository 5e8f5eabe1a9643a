"""The incident contract: one failure wave, as the pipeline reports it.

``incidents.json`` is a JSON array of incident objects validated against
``schemas/incident.schema.json`` (version 1.0). Monitoring opens an incident
and sets ``start``/``detected_at``/``level``; diagnosis fills ``scope``,
``cause``, ``confidence`` and ``evidence``; :func:`measure` fills the counts
from the events. Consumers must ignore fields they do not know, so later
versions can add fields without breaking anyone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl

from tapshield.errors import ContractError
from tapshield.fileio import write_text_atomic
from tapshield.money import format_fen
from tapshield.timeutil import parse_rfc3339, to_rfc3339

SCHEMA_VERSION = "1.0"
CAUSES: tuple[str, ...] = ("interface", "network", "risk_control", "fraud_attack", "release",
                           "unknown")

Scope = list[dict[str, str]]


@dataclass(slots=True)
class Incident:
    id: str
    start: datetime
    detected_at: datetime
    level: int
    end: datetime | None = None
    scope: Scope = field(default_factory=list)
    cause: str = "unknown"
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    failed_attempts: int = 0
    failed_payments: int = 0
    affected_users: int = 0
    affected_merchants: int = 0
    lost_fen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields beyond the 1.0 contract (alerts, level history, impact, ...)."""

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "start": to_rfc3339(self.start, tz),
            "end": to_rfc3339(self.end, tz) if self.end is not None else None,
            "detected_at": to_rfc3339(self.detected_at, tz),
            "level": int(self.level),
            "scope": [dict(sorted(c.items())) for c in self.scope],
            "cause": self.cause,
            "confidence": round(float(self.confidence), 4),
            "evidence": list(self.evidence),
            "failed_attempts": int(self.failed_attempts),
            "failed_payments": int(self.failed_payments),
            "affected_users": int(self.affected_users),
            "affected_merchants": int(self.affected_merchants),
            "lost_amount": format_fen(self.lost_fen),
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Incident:
        validate_incident(d)
        whole, _, frac = d["lost_amount"].partition(".")
        known = set(asdict(cls(id="", start=datetime.min, detected_at=datetime.min, level=4)))
        known |= {"start", "end", "detected_at", "lost_amount", "schema_version"}
        return cls(
            id=d["id"],
            start=parse_rfc3339(d["start"]),
            end=parse_rfc3339(d["end"]) if d.get("end") else None,
            detected_at=parse_rfc3339(d["detected_at"]),
            level=int(d["level"]),
            scope=[dict(c) for c in d["scope"]],
            cause=d["cause"],
            confidence=float(d["confidence"]),
            evidence=list(d["evidence"]),
            failed_attempts=int(d["failed_attempts"]),
            failed_payments=int(d["failed_payments"]),
            affected_users=int(d["affected_users"]),
            affected_merchants=int(d["affected_merchants"]),
            lost_fen=int(whole) * 100 + int((frac + "00")[:2]),
            extra={k: v for k, v in d.items() if k not in known},
        )


@cache
def incident_schema() -> dict[str, Any]:
    text = resources.files("tapshield").joinpath("schemas/incident.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Any:
    # jsonschema.validate() checks the schema itself on every call (14 ms each:
    # most of writing a day's incidents); the schema is ours and fixed.
    schema = incident_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_incident(d: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``d`` breaks the contract."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(d))
    if error is not None:
        raise error


def write_incidents(path: Path | str, incidents: list[Incident], tz: str | None = None) -> Path:
    """Write ``incidents.json`` (validated on the way out: we never publish a broken one)."""
    data = [i.to_dict(tz) for i in incidents]
    for d in data:
        validate_incident(d)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # Through a temporary name and a rename: ``live`` rewrites the file as incidents
    # evolve while people read it, and a crash must not leave half of one. (No
    # fsync: it is rewritten often and the run's end is what makes it durable.)
    write_text_atomic(p, json.dumps(data, indent=2, ensure_ascii=False) + "\n", fsync=False)
    return p


def first_line(exc: BaseException) -> str:
    """An exception's message on one line (jsonschema's run to dozens)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_json_file(path: Path | str, what: str) -> Any:
    """A JSON document, or a one-line :class:`ContractError` naming what is wrong
    with the file (missing, a directory, not UTF-8, not JSON)."""
    p = Path(path)
    if not p.exists():
        raise ContractError(f"{p}: no such file")
    if p.is_dir():
        raise ContractError(f"{p}: is a directory, not {what}")
    try:
        return json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ContractError(
            f"{p.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ContractError(f"{p.name}: not valid JSON ({first_line(exc)})") from None


def incidents_from_list(data: Any, name: str) -> list[Incident]:
    """Incidents of a decoded ``incidents.json``, each checked against the schema
    and against ``start <= end``; one-line :class:`ContractError` otherwise."""
    if not isinstance(data, list):
        raise ContractError(f"{name}: incidents.json must be a JSON array of incidents")
    out = []
    for n, d in enumerate(data):
        try:
            inc = Incident.from_dict(d)
        except Exception as exc:  # jsonschema.ValidationError, KeyError, ValueError, TypeError
            raise ContractError(
                f"{name}: not a valid incidents.json (incident #{n}: {first_line(exc)})"
            ) from None
        if inc.end is not None and inc.end < inc.start:
            raise ContractError(
                f"{name}: incident {inc.id!r} ends ({inc.end.isoformat()}) before it starts "
                f"({inc.start.isoformat()})"
            )
        out.append(inc)
    return out


def read_incidents(path: Path | str) -> list[Incident]:
    """Read and check an ``incidents.json`` (the one reader every command uses)."""
    return incidents_from_list(read_json_file(path, "an incidents file"), Path(path).name)


def scope_expr(scope: Scope) -> pl.Expr:
    """Rows inside any of the scope's combinations (``[]`` = every row)."""
    if not scope:
        return pl.lit(True)
    terms = []
    for combo in scope:
        term = pl.lit(True)
        for dim, value in combo.items():
            term = term & (pl.col(dim) == value)
        terms.append(term)
    return pl.any_horizontal(terms).fill_null(False)


@dataclass(frozen=True, slots=True)
class Counts:
    failed_attempts: int
    failed_payments: int
    affected_users: int
    affected_merchants: int
    lost_fen: int


def measure(
    events: pl.DataFrame,
    scope: Scope,
    start: datetime,
    end: datetime | None,
    failure: pl.Expr,
) -> Counts:
    """Count what a wave cost, from the events themselves.

    ``failure`` marks the attempts that carry the wave's failure signature
    (technical failures for an outage, risk declines for a misfire). A failed
    payment is a tap (``payment_id``) in scope and in ``[start, end]`` with at
    least one such attempt and no approved attempt at all: a tap rescued by a
    retry or a failover is not lost. Its amount is counted once.
    """
    window = pl.col("ts") >= start
    if end is not None:
        window = window & (pl.col("ts") <= end)
    inside = events.filter(window & scope_expr(scope))
    if inside.height == 0:
        return Counts(0, 0, 0, 0, 0)
    marked = inside.with_columns(failure.fill_null(False).alias("_fail"))
    failed_attempts = int(marked["_fail"].sum())
    # Approval anywhere (even outside the scope, e.g. after failover to another
    # channel) rescues the tap.
    tap_ids = marked.filter(pl.col("_fail"))["payment_id"].unique()
    taps = events.filter(pl.col("payment_id").is_in(tap_ids.implode())).group_by("payment_id").agg(
        pl.col("outcome").cast(pl.String).eq("approved").any().alias("ok"),
        pl.col("amount_fen").first().alias("amount_fen"),
        pl.col("user_id").first().alias("user_id"),
        pl.col("merchant_id").first().alias("merchant_id"),
    )
    lost = taps.filter(~pl.col("ok"))
    return Counts(
        failed_attempts=failed_attempts,
        failed_payments=lost.height,
        affected_users=lost["user_id"].n_unique(),
        affected_merchants=lost["merchant_id"].n_unique(),
        lost_fen=int(lost["amount_fen"].sum() or 0),
    )

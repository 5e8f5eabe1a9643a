"""The changes contract: what was changed, and when.

Deploys, configuration and risk-rule changes explain failure waves (a release
that breaks taps, a rule that declines good customers); announced maintenance
windows explain waves that must not page anyone. Diagnosis looks back from an
incident for the changes just before it; alerting silences what falls inside
a maintenance window.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tapshield.tabular import Field, RowRule, TableContract, TableResult

CHANGE_KINDS: tuple[str, ...] = ("deploy", "config", "rule_change", "maintenance")

CHANGES = TableContract(
    name="changes",
    version="1.0",
    fields=(
        Field("ts", "timestamp", required=True,
              description="when the change took effect (RFC 3339 with offset, or epoch ms)"),
        Field("kind", "enum", required=True, values=CHANGE_KINDS,
              description="what sort of change"),
        Field("component", "string", required=True, pattern=r"^[A-Za-z0-9_.:/-]{1,128}$",
              description="what changed: `app`, `gateway`, `risk_rules`, `channel:nfc`, ..."),
        Field("version", "string", description="the new version, rule set or config id"),
        Field("end_ts", "timestamp",
              description="end of a maintenance window (required for `maintenance`)"),
        Field("note", "string", description="free text"),
    ),
    rules=(
        RowRule("maintenance_end", "end_ts", "a `maintenance` window needs an end_ts",
                lambda: (pl.col("kind") == "maintenance") & pl.col("end_ts").is_null()),
        RowRule("end_before_start", "end_ts", "end_ts must not be before ts",
                lambda: pl.col("end_ts") < pl.col("ts")),
    ),
)


def read_changes(path: Path | str) -> TableResult:
    """Read and validate a changes file (CSV or JSONL); valid rows sorted by time."""
    result = CHANGES.read(path)
    result.valid = result.valid.sort("ts")
    return result


def empty_changes() -> pl.DataFrame:
    return CHANGES.empty()


def scope_of(component: str) -> dict[str, str]:
    """The event slice a change touches, from its component name.

    ``channel:nfc`` -> ``{"channel": "nfc"}``; ``region:CN-GD`` ->
    ``{"region": "CN-GD"}``; plain components (``app``, ``gateway``) touch
    everything and give ``{}``.
    """
    dim, sep, value = component.partition(":")
    if sep and dim in ("channel", "region", "carrier", "merchant_id", "app_version",
                       "server_version", "device_model", "os"):
        return {dim: value}
    return {}

"""The files an analysis leaves behind, written as it goes.

``alerts.jsonl`` grows line by line (one alert state change per line, flushed
at once so a tail -f shows it live); ``incidents.json`` is rewritten whenever
an incident changes, always complete and valid against the contract;
``report.html`` and then ``summary.json`` are written once, at the end, from
the complete result (extensions such as the financing impact have added their
figures and sections by then): ``summary.json`` comes last, so its presence
says every other output is complete.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import polars as pl

from tapshield.fileio import write_text_atomic
from tapshield.incident import Incident, write_incidents
from tapshield.monitor.alerts import AlertEvent

if TYPE_CHECKING:
    from tapshield.pipeline.analyze import AnalysisResult


VOLATILE_SUMMARY_KEYS = frozenset({"processing_seconds", "events_per_second"})
"""Summary figures that depend on the machine, not the input: shown by the
command and kept with the run in the database, left out of ``summary.json``
so the same inputs give the same files byte for byte."""


DIGEST_VERSION = "1.0"
"""Version of ``fraud_digest.json`` (docs/contracts.md)."""


class FileSink:
    def __init__(self, out_dir: Path, *, tz: str, changes: pl.DataFrame | None = None,
                 lang: str = "en") -> None:
        self.lang = lang
        self.out_dir = out_dir
        self.tz = tz
        self.changes = changes
        out_dir.mkdir(parents=True, exist_ok=True)
        self.alerts_path = out_dir / "alerts.jsonl"
        self.incidents_path = out_dir / "incidents.json"
        self.summary_path = out_dir / "summary.json"
        self.report_path = out_dir / "report.html"
        self.digest_path = out_dir / "fraud_digest.json"
        self._fh: IO[str] = open(self.alerts_path, "w", encoding="utf-8")
        self._incidents: dict[str, Incident] = {}
        write_incidents(self.incidents_path, [], tz)

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        for ev in events:
            self._fh.write(json.dumps(ev.to_dict(self.tz), ensure_ascii=False, default=str))
            self._fh.write("\n")
        self._fh.flush()

    def incidents(self, incidents: Sequence[Incident]) -> None:
        for inc in incidents:
            self._incidents[inc.id] = inc
        write_incidents(self.incidents_path, list(self._incidents.values()), self.tz)

    def close(self, result: AnalysisResult) -> None:
        self._fh.close()
        write_incidents(self.incidents_path, result.incidents, self.tz)
        if result.digest:
            write_text_atomic(self.digest_path, json.dumps(
                {"schema_version": DIGEST_VERSION, "hours": result.digest},
                indent=1, ensure_ascii=False) + "\n")
        from tapshield.report import render_report

        write_text_atomic(self.report_path, render_report(
            result, tz=self.tz, changes=self.changes, sections=result.sections,
            lang=self.lang))
        summary = {k: v for k, v in result.summary.items() if k not in VOLATILE_SUMMARY_KEYS}
        write_text_atomic(self.summary_path,
                          json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")


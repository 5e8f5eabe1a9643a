"""Analyse an events file: the whole pipeline over a replay, as production would.

:func:`analyse_file` reads and validates the events once, runs them through
:class:`~tapshield.pipeline.Analysis` (monitor, incidents, diagnosis), records
the run in the store and, with a loan book, values the financing impact in
the same pass (:class:`~tapshield.app.impact.ImpactTap`). Every output file
is written once, complete: ``alerts.jsonl`` and ``incidents.json`` as the
analysis goes, ``report.html`` and then ``summary.json`` at the end with
the input accounting and the impact already in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tapshield.events.changes import read_changes
from tapshield.events.read import EventReader, ReadStats
from tapshield.events.rejects import RejectWriter
from tapshield.events.write import write_report_csv
from tapshield.pipeline import Analysis, AnalysisResult, Extension, PipelineConfig, analyze_frames


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    """What ``tapshield analyze`` is asked to do."""

    events: Path
    out: Path
    changes: Path | None = None
    portfolio: Path | None = None
    """A loan book: adds the financing impact (impact.json, impact.html)."""
    config: Path | None = None
    """Monitoring config (warning levels, detectors); ``None`` = built-in."""
    db: str | None = None
    """Database URL; ``None`` = ``$TAPSHIELD_DB_URL`` or ``OUT/tapshield.db``."""
    lateness: timedelta = timedelta(seconds=60)
    chunk_rows: int = 500_000
    lang: str = "en"
    """Language of report.html (``en``, ``zh``)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a running analysis is (for a progress display)."""

    events: int
    incidents: int


@dataclass(slots=True)
class AnalyzeOutcome:
    result: AnalysisResult
    input: ReadStats
    """The reader's accounting of every row of the events file."""
    change_rejects: int
    out: Path
    paths: dict[str, Path] = field(default_factory=dict)
    """Files written beside the four standard outputs (impact files)."""

    @property
    def rejected(self) -> int:
        return self.input.rejected + self.change_rejects


@dataclass(slots=True)
class InputAccounting:
    """Puts the reader's accounting into the summary before it is written."""

    stats: ReadStats

    def observe(self, batch: object) -> None:
        return None

    def finish(self, result: AnalysisResult) -> None:
        result.summary["input"] = self.stats.as_dict()


def analyse_file(
    opts: AnalyzeOptions, *, on_progress: Callable[[Progress], None] | None = None
) -> AnalyzeOutcome:
    """Run the pipeline over ``opts.events``; outputs go to ``opts.out``."""
    from tapshield.storage import Store, default_url
    from tapshield.storage.sink import StoreSink

    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    change_frame = None
    change_rejects = 0
    if opts.changes is not None:
        ch = read_changes(opts.changes)
        change_frame = ch.valid
        change_rejects = ch.rejects.height
        if change_rejects:
            write_report_csv(ch.rejects, out / "changes.rejects.csv")
    rejects = RejectWriter(out / "rejects.csv")
    reader = EventReader(opts.events, chunk_rows=opts.chunk_rows, on_reject=rejects.write)
    extensions: list[Extension] = [InputAccounting(reader.stats)]
    impact = None
    if opts.portfolio is not None:
        from tapshield.app.impact import ImpactTap

        impact = ImpactTap(opts.portfolio, out, input_stats=lambda: reader.stats)
        extensions.append(impact)
    store = Store(opts.db or default_url(out))
    run_id = store.start_run("analyze", str(opts.events))
    cfg = PipelineConfig(lateness=opts.lateness, monitor_config=opts.config, lang=opts.lang)
    status = "failed"
    try:
        def tick(analysis: Analysis) -> None:
            if on_progress is not None:
                on_progress(Progress(analysis.events_seen, len(analysis.book.incidents())))

        result = analyze_frames(
            reader, changes=change_frame, config=cfg, out_dir=out,
            sinks=[StoreSink(store, run_id, cfg.tz)], on_batch=tick, extensions=extensions,
        )
        status = "ok"
    finally:
        rejects.close()
        store.finish_run(
            run_id, status=status, read=reader.stats.rows, accepted=reader.stats.accepted,
            rejected=reader.stats.rejected,
        )
        store.close()
    return AnalyzeOutcome(result, reader.stats, change_rejects, out,
                          dict(impact.paths) if impact is not None else {})


"""Analyse an events file: the whole pipeline over a replay, as production would.

:func:`analyse_file` reads and validates the events once, runs them through
:class:`~tapshield.pipeline.Analysis` (monitor, incidents, diagnosis), records
the run in the store and, with a loan book, values the financing impact in
the same pass (:class:`~tapshield.app.impact.ImpactTap`). Every output file
is written once, complete, into a staging folder (``alerts.jsonl`` and
``incidents.json`` as the analysis goes, ``report.html`` and ``summary.json``
at the end with the input accounting and the impact already in them) and the
whole set is moved into the output folder when the run ends, ``summary.json``
last (:class:`~tapshield.app.outputs.OutputDir`): a crash leaves the folder as
it was, a failed run leaves nothing new, no earlier output stays beside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tapshield.app.outputs import OutputDir, StopFlag, disk_full, until_stopped
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
    portfolio_rejects: int = 0
    """Loan-book rows rejected (written to ``portfolio.rejects.csv``)."""
    status: str = "complete"
    """``complete``, or ``interrupted`` (SIGTERM / SIGINT: the outputs cover
    the events read until then and ``summary.json`` says so)."""

    @property
    def rejected(self) -> int:
        return self.input.rejected + self.change_rejects + self.portfolio_rejects


@dataclass(slots=True)
class InputAccounting:
    """Puts the run's status and the reader's accounting into the summary before
    it is written: ``status``, ``rows_read``, ``rows_accepted`` and
    ``rows_rejected`` are always there (docs/contracts.md, the completion marker)."""

    stats: ReadStats
    stop: StopFlag | None = None
    change_rejects: int = 0

    def observe(self, batch: object) -> None:
        return None

    def finish(self, result: AnalysisResult) -> None:
        interrupted = self.stop is not None and self.stop()
        result.summary["status"] = "interrupted" if interrupted else "complete"
        result.summary["rows_read"] = self.stats.rows
        result.summary["rows_accepted"] = self.stats.accepted
        result.summary["rows_rejected"] = self.stats.rejected
        result.summary["changes_rejected"] = self.change_rejects
        result.summary["input"] = self.stats.as_dict()


def analyse_file(
    opts: AnalyzeOptions, *, on_progress: Callable[[Progress], None] | None = None,
    stop: StopFlag | None = None,
) -> AnalyzeOutcome:
    """Run the pipeline over ``opts.events``; outputs go to ``opts.out``.

    ``stop`` (see :func:`~tapshield.app.outputs.graceful_stop`) ends the read
    early: what was read is analysed, the outputs are committed with
    ``status: interrupted`` and the run is recorded as such.
    """
    from sqlalchemy import exc as sa_exc

    from tapshield.storage import Store, default_url
    from tapshield.storage.sink import StoreSink
    from tapshield.storage.store import database_error

    folder = OutputDir(opts.out, inputs=[p for p in (opts.events, opts.changes, opts.portfolio,
                                                     opts.config) if p is not None])
    stage = folder.staging
    rejects: RejectWriter | None = None
    store = None
    run_id = None
    finished = False
    reader: EventReader | None = None
    status = "failed"
    result: AnalysisResult | None = None

    def finish(store: Store, run_id: str, status: str) -> None:
        st = reader.stats if reader is not None else None
        store.finish_run(
            run_id, status=status, read=st.rows if st else 0,
            accepted=st.accepted if st else 0, rejected=st.rejected if st else 0,
        )  # the summary (with timings and the timeline) is recorded by StoreSink

    try:
        change_frame = None
        change_rejects = 0
        if opts.changes is not None:
            ch = read_changes(opts.changes)
            change_frame = ch.valid
            change_rejects = ch.rejects.height
            if change_rejects:
                write_report_csv(ch.rejects, stage / "changes.rejects.csv")
        rejects = RejectWriter(stage / "rejects.csv")
        reader = EventReader(opts.events, chunk_rows=opts.chunk_rows, on_reject=rejects.write)
        extensions: list[Extension] = [InputAccounting(reader.stats, stop, change_rejects)]
        impact = None
        if opts.portfolio is not None:
            from tapshield.app.impact import ImpactTap

            stats = reader.stats
            impact = ImpactTap(opts.portfolio, stage, input_stats=lambda: stats)
            impact.read_book()
            extensions.append(impact)
        store = Store(opts.db or default_url(opts.out))
        run_id = store.start_run("analyze", str(opts.events))
        cfg = PipelineConfig(lateness=opts.lateness, monitor_config=opts.config, lang=opts.lang)

        def tick(analysis: Analysis) -> None:
            if on_progress is not None:
                on_progress(Progress(analysis.events_seen, len(analysis.book.incidents())))

        result = analyze_frames(
            until_stopped(reader, stop), changes=change_frame, config=cfg, out_dir=stage,
            sinks=[StoreSink(store, run_id, cfg.tz)], on_batch=tick, extensions=extensions,
        )
        rejects.close()
        status = str(result.summary.get("status", "complete"))
        status = "interrupted" if status == "interrupted" else "ok"
        # The database records the run's end before the outputs move into place: a
        # database that cannot be written (a full disk) then fails the run with
        # nothing new in the folder, as every exit 2 does. (Killed between the two,
        # the run is recorded complete and the folder keeps the earlier outputs;
        # a rerun completes it.)
        finish(store, run_id, status)
        finished = True
        folder.commit()
    except sa_exc.SQLAlchemyError as exc:
        raise database_error(exc, store.url if store is not None else opts.db) from None
    except OSError as exc:
        full = disk_full(exc, opts.out)
        if full is None:
            raise
        raise full from None
    finally:
        if rejects is not None:
            rejects.close()
        if not folder.committed:
            folder.abandon()
        if store is not None:
            if run_id is not None and (not finished or not folder.committed):
                # failed: recorded if the database still can be written; the error
                # the run stops with is the first one, never this one
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    finish(store, run_id, "failed")
            store.close()
    assert result is not None and reader is not None
    return AnalyzeOutcome(
        result, reader.stats, change_rejects, opts.out,
        {k: folder.final(v.name) for k, v in impact.paths.items()} if impact is not None else {},
        portfolio_rejects=impact.rejected if impact is not None else 0,
        status="interrupted" if status == "interrupted" else "complete",
    )

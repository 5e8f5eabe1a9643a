"""Value an outage: lost sales, borrower stress and regulatory class of incidents.

Two ways in. :func:`value_impact` is ``tapshield impact``: events, incidents
and a loan book from files. :class:`ImpactTap` is the same valuation riding
along an analysis (``tapshield analyze --portfolio``): it collects what the
impact model needs from the batches the monitor already sees, so the events
file is read and validated once, and it completes the analysis' summary and
report before they are written.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tapshield.app.outputs import SUMMARY, disk_full, write_json_atomic
from tapshield.events.read import EventReader, ReadStats
from tapshield.events.write import write_report_csv
from tapshield.impact.assess import ImpactResult, assess
from tapshield.impact.collect import WINDOW_COLUMNS
from tapshield.impact.config import ImpactConfig
from tapshield.impact.incidents import load_incidents
from tapshield.impact.portfolio import Portfolio, read_portfolio
from tapshield.impact.report import summary as impact_summary
from tapshield.incident import Incident
from tapshield.report import impact_section
from tapshield.report.impact import write_impact

if TYPE_CHECKING:
    from tapshield.pipeline import AnalysisResult


@dataclass(frozen=True, slots=True)
class ImpactOptions:
    """``tapshield impact``: what to value, against which loan book and settings."""

    events: Path
    incidents: Path
    """``incidents.json`` of an analysis, or a simulator ``truth.json``."""
    out: Path
    portfolio: Path | None = None
    schedule: Path | None = None
    config: Path | None = None
    regulatory: Path | None = None


@dataclass(slots=True)
class ImpactOutcome:
    result: ImpactResult
    paths: dict[str, Path]
    events: ReadStats
    portfolio: Portfolio | None
    portfolio_rejects: Path | None = None

    @property
    def rejected(self) -> int:
        """Input rows rejected: events plus portfolio rows."""
        return self.events.rejected + (self.portfolio.rejected if self.portfolio else 0)


def value_impact(
    opts: ImpactOptions, *, on_batch: Callable[[ReadStats], None] | None = None
) -> ImpactOutcome:
    """Value the incidents of ``opts``; writes impact.json, impact.html and the CSV tables."""
    from tapshield.events.rejects import RejectWriter

    cfg = ImpactConfig.load(opts.config) if opts.config is not None else ImpactConfig()
    incs = load_incidents(opts.incidents)
    pf = read_portfolio(opts.portfolio, schedule=opts.schedule) if opts.portfolio else None
    # Staged and moved into place as a whole (see tapshield.app.outputs): a
    # failed or killed valuation leaves the folder as it was.
    from tapshield.app.outputs import OutputDir

    sources = [opts.events, opts.incidents, opts.portfolio, opts.schedule, opts.config,
               opts.regulatory]
    folder = OutputDir(opts.out, inputs=[p for p in sources if p is not None])
    stage = folder.staging
    rejects = RejectWriter(stage / f"{opts.events.name}.rejects.csv")
    try:
        reader = EventReader(opts.events, on_reject=rejects.write)
        trust = TrustWindow.of(incs)

        def batches() -> Iterator[pl.DataFrame]:
            for batch in reader:
                trust.take(batch)
                yield batch
                if on_batch is not None:
                    on_batch(reader.stats)

        result = assess(batches(), incs, pf, config=cfg, regulatory=opts.regulatory)
        result.trust = trust.estimates()
        rejects.close()
        result.inputs["events"] = reader.stats.as_dict()
        pf_rejects = None
        if pf is not None and pf.rejected:
            pf_rejects = stage / "portfolio.rejects.csv"
            write_report_csv(pf.rejects, pf_rejects)
        paths = write_impact(result, stage)
        write_json_atomic(stage / SUMMARY, impact_completion(
            result, reader.stats, pf.rejected if pf is not None else 0,
            [p.name for p in paths.values()]
            + [p.name for p in (rejects.path, pf_rejects) if p is not None and p.exists()]))
        folder.commit()
    except OSError as exc:
        full = disk_full(exc, opts.out)
        if full is None:
            raise
        raise full from None
    finally:
        rejects.close()
        if not folder.committed:
            folder.abandon()
    final = {k: folder.final(v.name) for k, v in paths.items()}
    return ImpactOutcome(result, final, reader.stats, pf,
                         folder.final(pf_rejects.name) if pf_rejects is not None else None)


def impact_completion(result: ImpactResult, events: ReadStats, portfolio_rejected: int,
                      outputs: list[str]) -> dict[str, Any]:
    """``summary.json`` of ``tapshield impact``: the completion marker of the folder,
    by the same contract as ``analyze``'s (docs/contracts.md): ``status`` and the
    events' ``rows_read`` / ``rows_accepted`` / ``rows_rejected`` always there,
    then the loan-book rejects, the headline figures and the files written (a
    later run into the folder removes exactly those)."""
    return {
        "command": "impact",
        "status": "complete",
        "rows_read": events.rows,
        "rows_accepted": events.accepted,
        "rows_rejected": events.rejected,
        "portfolio_rejected": portfolio_rejected,
        **impact_summary(result),
        "input": events.as_dict(),
        "outputs": sorted([*outputs, SUMMARY]),
    }


@dataclass(slots=True)
class TrustWindow:
    """The events around the ended paging incidents, kept while the valuation reads
    them, for the trust estimate (do the affected customers come back?,
    :func:`tapshield.respond.trust.trust_impact`): from ``TRUST_LOOKBACK`` before
    the first to ``TRUST_HORIZON`` after the last, in the impact columns only."""

    incidents: list[Incident]
    parts: list[pl.DataFrame] = field(default_factory=list)

    @classmethod
    def of(cls, incidents: Sequence[Incident]) -> TrustWindow:
        return cls([i for i in incidents if i.end is not None and 1 <= int(i.level) <= 3])

    def take(self, batch: pl.DataFrame) -> None:
        if not self.incidents or batch.height == 0:
            return
        lo = min(i.start for i in self.incidents) - TRUST_LOOKBACK
        hi = max(i.end for i in self.incidents if i.end is not None) + TRUST_HORIZON
        part = batch.filter((pl.col("ts") >= lo) & (pl.col("ts") <= hi))
        if part.height:
            self.parts.append(part.select([c for c in WINDOW_COLUMNS if c in batch.columns]))

    def estimates(self) -> dict[str, dict[str, Any]]:
        """Per incident id, the estimate's figures (no notice log here: the comparison of
        notified and not-notified customers is the drill's, or the outbox's)."""
        from tapshield.respond.responder import affected_customers
        from tapshield.respond.trust import trust_impact

        if not self.parts:
            return {}
        events = pl.concat(self.parts, how="vertical_relaxed")
        self.parts = []
        out: dict[str, dict[str, Any]] = {}
        for inc in self.incidents:
            hit = set(affected_customers(events, inc)["user_id"].to_list())
            t = trust_impact(events, inc, hit, horizon=TRUST_HORIZON, lookback=TRUST_LOOKBACK)
            if t is not None:
                out[inc.id] = t.to_dict()
        return out


TRUST_LOOKBACK = timedelta(hours=24)
TRUST_HORIZON = timedelta(hours=2)

SPILL_ROWS = 2_000_000
"""Rows of impact columns an :class:`ImpactTap` holds in memory before it moves
them to Arrow IPC files in a temporary directory (about 100 bytes a row)."""


@dataclass(slots=True)
class ImpactTap:
    """The financing impact as an extension of the analysis (one pass over the events).

    The impact model needs the merchants' history from weeks before an
    incident, and which incidents there will be is known only at the end; so
    the tap keeps the columns the model reads (:data:`WINDOW_COLUMNS`, a
    fraction of an event) of every event the pipeline sees, spilling them to
    Arrow IPC files past :data:`SPILL_ROWS`, and hands them to
    :func:`~tapshield.impact.assess` when the analysis finishes. The file is
    parsed and validated once; the valuation does not depend on how the
    stream was cut into batches (see :mod:`tapshield.impact.collect`).
    """

    portfolio: Path
    out: Path
    input_stats: Callable[[], ReadStats] | None = None
    """The reader's accounting of the events file (reported in impact.json)."""
    book: Portfolio | None = None
    """The loan book, read (and its rejected rows written) by :meth:`read_book`."""
    rejects_path: Path | None = None
    """``portfolio.rejects.csv`` when borrowers were rejected (none: no file)."""
    _held: list[pl.DataFrame] = field(default_factory=list)
    _held_rows: int = 0
    _spill_dir: Path | None = None
    _spilled: list[Path] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    result: ImpactResult | None = None

    def read_book(self) -> Portfolio:
        """Read the loan book before the events, so a book that cannot be used
        stops the run at once, and write its rejected rows: a borrower left out
        of the valuation is never left out silently."""
        if self.book is None:
            self.book = read_portfolio(self.portfolio)
            if self.book.rejected:
                self.rejects_path = self.out / "portfolio.rejects.csv"
                write_report_csv(self.book.rejects, self.rejects_path)
        return self.book

    @property
    def rejected(self) -> int:
        """Loan-book rows rejected (0 before :meth:`read_book`)."""
        return self.book.rejected if self.book is not None else 0

    def observe(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        self._held.append(batch.select([c for c in WINDOW_COLUMNS if c in batch.columns]))
        self._held_rows += batch.height
        if self._held_rows >= SPILL_ROWS:
            self._spill()

    def _spill(self) -> None:
        if self._spill_dir is None:
            self._spill_dir = Path(tempfile.mkdtemp(prefix=".impact-", dir=self.out))
        path = self._spill_dir / f"{len(self._spilled):06d}.arrow"
        pl.concat(self._held, rechunk=False).write_ipc(path, compression="uncompressed")
        self._spilled.append(path)
        self._held, self._held_rows = [], 0

    def _batches(self) -> Iterator[pl.DataFrame]:
        for path in self._spilled:
            yield pl.read_ipc(path)
        yield from self._held

    def finish(self, result: AnalysisResult) -> None:
        trust = TrustWindow.of(result.incidents)

        def batches() -> Iterator[pl.DataFrame]:
            for batch in self._batches():
                trust.take(batch)
                yield batch

        try:
            impact = assess(batches(), result.incidents, self.read_book())
            impact.trust = trust.estimates()
        finally:
            if self._spill_dir is not None:
                shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._held, self._spilled = [], []
        if self.input_stats is not None:
            impact.inputs["events"] = self.input_stats().as_dict()
        self.result = impact
        self.paths = write_impact(impact, self.out)
        figures = impact_summary(impact)
        figures["portfolio_rejected"] = self.rejected
        result.summary["impact"] = figures
        result.sections.append(impact_section(figures, self.paths["html"].name))

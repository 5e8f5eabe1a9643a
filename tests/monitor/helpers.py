"""Run a Monitor over a frame in batches and summarise what it said."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tapshield.monitor import AlertEvent, Monitor, MonitorConfig


@dataclass
class Run:
    events: list[AlertEvent]
    monitor: Monitor

    def alerts(self) -> dict[str, list[AlertEvent]]:
        out: dict[str, list[AlertEvent]] = {}
        for e in self.events:
            out.setdefault(e.alert_id, []).append(e)
        return out

    def firing(self, signal: str | None = None) -> list[AlertEvent]:
        return [e for e in self.events if e.state in ("firing", "suppressed")
                and (signal is None or e.signal == signal)]

    def paging(self) -> list[AlertEvent]:
        return [e for e in self.events if e.notify]


def run(frame: pl.DataFrame, config: MonitorConfig | None = None, batch: int = 20_000,
        changes: pl.DataFrame | None = None) -> Run:
    m = Monitor(config or MonitorConfig(), changes=changes)
    out: list[AlertEvent] = []
    for i in range(0, frame.height, batch):
        out.extend(m.process(frame.slice(i, batch)))
    out.extend(m.close())
    return Run(out, m)

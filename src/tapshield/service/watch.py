"""The live monitor inside the service: one leader watches what every worker received.

Every worker writes what it receives to the inbox (``service_events``: the
batches of ``POST /v1/events`` and every settled attempt). Exactly one
process, the **leader**, runs the pipeline over it: the same
:class:`~tapshield.pipeline.Analysis` (monitor, incidents, diagnosis) as
``tapshield analyze`` and ``tapshield live``, fed from the inbox in arrival
order and reordered in event time. The leader is whoever holds a lock
(PostgreSQL: an advisory lock on a connection it keeps; SQLite: a lock file
beside the database); the others wait and take over within seconds when the
leader dies (its connection, or its file lock, goes with it).

What the leader does each poll:

1. applies the runtime silences (``SilenceStore.active()``) to the monitor's
   suppression (new alerts matching one are ``suppressed`` and page no one);
2. reads the inbox past its position and feeds the pipeline; follows the wall
   clock so a feed that falls silent is still judged (a dead channel is
   silence, not errors);
3. stores alert changes and incidents in the database (what ``GET
   /v1/alerts`` and ``/v1/incidents`` read) and pushes them to Alertmanager;
4. every ``monitor_checkpoint_interval_s`` and at shutdown writes the whole
   detection state (:mod:`tapshield.monitor.checkpoint`: profile, detectors,
   recent events, open alerts with their paging history, open incidents)
   with the inbox position it includes and the alerts Alertmanager holds, to
   ``service_checkpoints`` under ``monitor``.

A new leader (a restart, a takeover) restores that checkpoint and reads the
inbox from its position: an outage open before the restart is still open
after it, nothing is counted twice, and nobody is paged again (the alert's
paging history is part of the state).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from tapshield.money import format_fen
from tapshield.monitor.alerts import AlertEvent
from tapshield.monitor.checkpoint import (
    StaleCheckpointError,
    export_state,
    fingerprint,
    restore_state,
)
from tapshield.service.inbox import Inbox
from tapshield.service.silences import Silence

if TYPE_CHECKING:
    from tapshield.pipeline import Analysis
    from tapshield.service.runtime import ServiceRuntime

log = logging.getLogger("tapshield.service.watch")

MONITOR_CHECKPOINT = "monitor"
ID_PREFIX = "LIVE"
"""Incident ids of the live monitor: ``LIVE-<day>-<n>`` (analysis runs use ``INC``)."""
READ_LIMIT = 50_000
_LEADER_LOCK = 0x7A95_1013  # PostgreSQL advisory lock id of the monitor's leader


def checkpoint_key(path: Path) -> bytes:
    """The key that signs monitor checkpoints, kept outside the database (created once)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), open(path, "x", encoding="ascii") as fh:
            path.chmod(0o600)
            fh.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


class _Leadership:
    """Held by one process at a time; released when the process (or connection) dies."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.engine = rt.engine
        self._conn: Connection | None = None
        self._key = _LEADER_LOCK
        self._fh: IO[str] | None = None
        db = make_url(rt.url).database if self.engine.dialect.name == "sqlite" else None
        self._path = Path(db + ".monitor.lock") if db and db != ":memory:" else None

    def acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            # one leader per schema: services sharing a database in other schemas
            # (and parallel test runs) do not wait for each other
            schema = str(conn.execute(text("select current_schema()")).scalar() or "")
            self._key = _LEADER_LOCK ^ int.from_bytes(
                hashlib.sha256(schema.encode()).digest()[:4], "big")
            got = bool(conn.execute(text("select pg_try_advisory_lock(:k)"),
                                    {"k": self._key}).scalar())
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        if self._path is None:
            return True
        fh = open(self._path, "a+", encoding="ascii")  # held while leading
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute(text("select pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


@dataclass(frozen=True)
class WallClockSilence:
    """A runtime silence as the monitor's suppression asks it: judged at the wall
    clock (as Alertmanager judges its silences), whatever the event time."""

    silence: Silence

    @property
    def id(self) -> str:
        return self.silence.id

    @property
    def comment(self) -> str:
        return self.silence.comment

    @property
    def ends_at(self) -> datetime:
        return self.silence.ends_at

    def mutes(self, labels: Mapping[str, str], at: datetime) -> bool:
        return self.silence.mutes(labels, datetime.now(UTC))


class _StoreAlerts:
    """Pipeline sink: alert changes and incidents into the database (run ``run_id``)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def alerts(self, events: Any) -> None:
        self.watch.rt.store.append_alerts(self.watch.run_id, [e.to_dict() for e in events])
        self.watch.alert_changes += len(events)

    def incidents(self, incidents: Any) -> None:
        self.watch.rt.store.save_incidents(self.watch.run_id, incidents)

    def close(self, result: Any) -> None:
        pass


class _Push:
    """Pipeline sink: alert changes to Alertmanager (and the page count)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def alerts(self, events: Any) -> None:
        self.watch.pages += sum(1 for e in events if e.notify and e.state == "firing")
        for n in self.watch.notifiers:
            n.send(events)

    def incidents(self, incidents: Any) -> None:
        pass

    def close(self, result: Any) -> None:
        pass


class Watch:
    """The leader election, the pipeline over the inbox, its checkpoint (module docstring)."""

    def __init__(self, rt: ServiceRuntime) -> None:
        from tapshield.notify.alertmanager import AlertmanagerNotifier

        self.rt = rt
        s = rt.settings
        self.inbox = Inbox(rt.engine)
        self.key = checkpoint_key(s.resolved_checkpoint_key_file())
        self.lateness = timedelta(seconds=s.monitor_lateness_s)
        self.config_fp = fingerprint(rt.monitor_config, s.monitor_lateness_s, ID_PREFIX)
        base = s.public_url.rstrip("/")
        self.notifiers = [AlertmanagerNotifier(
            u, generator_url=f"{base}/v1/incidents/{{incident_id}}",
            runbook_url=s.runbook_url or f"{base}/runbooks/{{cause}}",
            describe=self._describe, resend_interval=s.heartbeat_interval_s,
            extra_labels={"service": "tapshield", "instance": s.redis_namespace})
            for u in s.alertmanager]
        self.analysis: Analysis | None = None
        self.position = 0
        self.run_id = ""
        self.leader = False
        self.restored = False
        self.pages = 0
        self.alert_changes = 0
        self.restore_seconds: float | None = None
        self.last_checkpoint: float | None = None
        self.checkpointed_position = 0
        """Inbox position of the last checkpoint written (rows up to it may be purged)."""
        self._leadership = _Leadership(rt)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()
        """Held while the pipeline changes (a poll, a checkpoint) and while /metrics reads it."""

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tapshield-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling, write the last checkpoint, give up the leadership."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for n in self.notifiers:
            n.close(timeout=5.0)

    def wait_leader(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (self.leader and self.analysis is not None):
            time.sleep(0.05)
        return self.leader and self.analysis is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._leadership.acquire():
                    break
            except Exception:
                log.exception("monitor leadership: the database is unavailable")
            self._stop.wait(2.0)
        else:
            return
        try:
            self.leader = True
            t0 = time.perf_counter()
            self._become_leader()
            self.restore_seconds = time.perf_counter() - t0
            log.info("monitor leader", extra={"restored": self.restored,
                                              "position": self.position,
                                              "seconds": round(self.restore_seconds, 3)})
            self._loop()
        except Exception:
            log.exception("live monitor stopped on an error")
        finally:
            try:
                if self.analysis is not None:
                    with self.lock:
                        self.checkpoint()
            finally:
                self.leader = False
                self._leadership.release()

    def _loop(self) -> None:
        s = self.rt.settings
        next_ckpt = time.monotonic() + s.monitor_checkpoint_interval_s
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                with self.lock:
                    self.poll()
            except Exception:
                log.exception("monitor poll failed")
            now = time.monotonic()
            if now >= next_beat and self.notifiers:
                next_beat = now + s.heartbeat_interval_s
                for n in self.notifiers:
                    n.heartbeat(every=s.heartbeat_interval_s)
            if now >= next_ckpt:
                next_ckpt = now + s.monitor_checkpoint_interval_s
                with self.lock:
                    self.checkpoint()
            self._stop.wait(s.monitor_poll_interval_s)

    # -- the work -------------------------------------------------------------------

    def _fresh(self) -> Analysis:
        from tapshield.monitor import Monitor
        from tapshield.pipeline import Analysis, PipelineConfig
        from tapshield.respond.incidents import IncidentPolicy

        cfg = self.rt.monitor_config
        monitor = Monitor(cfg) if cfg is not None else Monitor()
        return Analysis(PipelineConfig(lateness=self.lateness,
                                       incidents=IncidentPolicy(id_prefix=ID_PREFIX)),
                        monitor=monitor)

    def _become_leader(self) -> None:
        got = self.rt.checkpoints.load(MONITOR_CHECKPOINT)
        analysis = None
        if got is not None:
            _, doc = got
            try:
                analysis, _header = restore_state(base64.b64decode(doc["blob"]), self.key,
                                                  config=self.config_fp)
                self.position = int(doc["position"])
                self.run_id = str(doc["run_id"])
                self.pages = int(doc.get("pages", 0))
                for n in self.notifiers:
                    n.restore_active(doc.get("alertmanager", {}).get(n.url, []))
                self.restored = True
            except (StaleCheckpointError, KeyError, ValueError, TypeError) as exc:
                log.warning("monitor checkpoint not usable; starting fresh",
                            extra={"error": str(exc)})
                analysis = None
        if analysis is None:
            analysis = self._fresh()
            self.position = self.inbox.position() if self.rt.settings.monitor_skip_backlog \
                else 0
            self.run_id = self.rt.store.start_run("serve", "live monitor")
        analysis.sinks = [_StoreAlerts(self), _Push(self)]
        self.analysis = analysis
        self._apply_silences()

    def _apply_silences(self) -> None:
        """Read the silences in force before every round: a silence created just before
        events arrive must hold for those events (a throttle of a few seconds let the
        first wave of a planned-work window page). One small indexed query per poll."""
        assert self.analysis is not None
        lifecycle = getattr(self.analysis.monitor, "lifecycle", None)
        if lifecycle is not None and hasattr(lifecycle, "runtime_silences"):
            lifecycle.runtime_silences = tuple(
                WallClockSilence(x) for x in self.rt.silences.active())

    def poll(self) -> int:
        """One round: silences, the inbox past the position, the clock. Events fed."""
        a = self.analysis
        assert a is not None
        fed = 0
        while True:
            pos, frame = self.inbox.read(self.position, READ_LIMIT)
            # silences read after the events: a silence committed before these events
            # were posted is in force for them
            self._apply_silences()
            if frame.height == 0:
                break
            a.feed(frame)
            self.position = pos
            fed += frame.height
            if frame.height < READ_LIMIT:
                break
        now = datetime.now(UTC)
        # follow the wall clock only for a current feed (a replay of old events
        # must not be told that weeks have passed)
        if self._current(a, now) or (a.last_ts is None and a.reorderer.held):
            a.advance(now)
        return fed

    def _current(self, a: Analysis, now: datetime) -> bool:
        last = a.last_ts
        if last is None:
            return False
        lag = (now - datetime.fromtimestamp(last / 1e6, UTC)).total_seconds()
        return -60.0 <= lag <= 3600.0

    def checkpoint(self) -> bool:
        a = self.analysis
        if a is None:
            return False
        sinks, a.sinks = a.sinks, []
        try:
            blob = export_state(a, self.key, config=self.config_fp,
                                meta={"position": self.position})
        finally:
            a.sinks = sinks
        doc = {"blob": base64.b64encode(blob).decode("ascii"), "position": self.position,
               "run_id": self.run_id, "pages": self.pages, "bytes": len(blob),
               "alertmanager": {n.url: n.active() for n in self.notifiers}}
        try:
            self.rt.checkpoints.save(MONITOR_CHECKPOINT, doc)
        except Exception:
            log.exception("monitor checkpoint failed")
            return False
        self.last_checkpoint = time.time()
        self.checkpointed_position = self.position
        return True

    # -- what people see -----------------------------------------------------------

    def _describe(self, ev: AlertEvent) -> dict[str, str]:
        """The incident's diagnosis as Alertmanager annotations."""
        a = self.analysis
        if a is None or not ev.incident_id:
            return {}
        inc = a.book.get(ev.incident_id)
        if inc is None:
            return {}
        scope = "; ".join(", ".join(f"{k}={v}" for k, v in sorted(c.items()))
                          for c in inc.scope) or "the whole flow"
        return {"cause": inc.cause, "confidence": f"{float(inc.confidence):.2f}",
                "scope": scope, "evidence": " | ".join(inc.evidence[:3]),
                "failed_payments": str(inc.failed_payments),
                "lost_amount": format_fen(inc.lost_fen)}

    def status(self) -> dict[str, Any]:
        a = self.analysis
        opened = getattr(a.monitor, "open_alerts", list) if a is not None else list
        return {"leader": self.leader, "restored": self.restored, "position": self.position,
                "events": a.events_seen if a is not None else 0,
                "open_alerts": len(opened()),
                "pages": self.pages, "alert_changes": self.alert_changes}


class WatchCollector:
    """The live monitor's metrics (``tapshield.metrics.monitor``) on ``/metrics``, from
    the worker that leads; other workers expose none (scrape every worker, or the
    leader: ``GET /v1/monitor`` says which)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def collect(self) -> Any:
        from tapshield.metrics.monitor import MonitorCollector

        a = self.watch.analysis
        if a is None or not self.watch.leader:
            return
        yield from MonitorCollector(a.monitor, lock=self.watch.lock,  # type: ignore[arg-type]
                                    notifiers=self.watch.notifiers).collect()

"""What one worker runs: the router, the tap book, the stores, the background jobs.

:class:`ServiceRuntime` is the service's composition root. The HTTP layer
(:mod:`tapshield.service.app`) only translates requests into calls on it, so
phase 2's additions (the live monitor fed by ``POST /v1/events`` and by
settled attempts, its checkpoint, the risk engine) attach here:

* ``ledger.listeners`` (:class:`~tapshield.service.taps.OutcomeListener`) hear
  every settled attempt after commit;
* ``decider`` (:class:`~tapshield.service.decision.Decider`) is the decision port;
* ``checkpoints`` holds named state documents (``router`` now);
* ``silences.active()`` is what a suppression stage reads.

Start-up: migrate the schema (once, under a lock, when asked), restore the
router's health from the last checkpoint, catch up with the peers' evidence
in Redis after the checkpoint's stream position, start the tap book and the
background jobs, then report ready. Shutdown (SIGTERM, after the server has
drained in-flight requests): stop the tap book once its queue is empty, push
the last observations to Redis, write the final checkpoint, close.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, select, text
from sqlalchemy.dialects import postgresql, sqlite

from tapshield.metrics.route import RouterCollector
from tapshield.route.router import Router
from tapshield.service import tables as st
from tapshield.service.audit import ServiceAudit
from tapshield.service.config import ServiceSettings
from tapshield.service.decision import Decider, EngineDecider, RuleSetDecider
from tapshield.service.inbox import Inbox
from tapshield.service.incidents import IncidentDesk
from tapshield.service.keys import KeyStore
from tapshield.service.metrics import ServiceMetrics, build_registry
from tapshield.service.ratelimit import RateLimiter
from tapshield.service.silences import SilenceStore
from tapshield.service.taps import TapLedger
from tapshield.service.watch import Watch, WatchCollector
from tapshield.storage.store import Store

log = logging.getLogger("tapshield.service")

ROUTER_CHECKPOINT = "router"
RESTRICTION_PREFIX = "risk:restriction:"


class Checkpoints:
    """Named state documents in ``service_checkpoints`` (last writer wins)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(self, name: str, doc: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        ins = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(
            st.checkpoints).values(name=name, taken_at=now, doc=doc)
        with self.engine.begin() as conn:  # an upsert: workers starting together may race
            conn.execute(ins.on_conflict_do_update(index_elements=[st.checkpoints.c.name],
                                                   set_={"taken_at": now, "doc": doc}))

    def load_prefix(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(st.checkpoints.c.name, st.checkpoints.c.doc)
                                .where(st.checkpoints.c.name.startswith(prefix, autoescape=True))
                                ).all()
        return [(r[0], dict(r[1])) for r in rows]

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(st.checkpoints)
                                     .where(st.checkpoints.c.name == name)).rowcount)

    def load(self, name: str) -> tuple[datetime, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(st.checkpoints.c.taken_at, st.checkpoints.c.doc)
                             .where(st.checkpoints.c.name == name)).first()
        return (r[0], dict(r[1])) if r is not None else None


def _tap_engine(url: str, synchronous: str = "normal") -> Engine:
    """The tap book's own engine. SQLite: ``BEGIN IMMEDIATE``, so a worker takes
    the write lock before reading a tap (two processes cannot both read the
    same history and then collide on upgrading to a writer)."""
    # No pre-ping: it would cost a round trip per transaction on the hot path. A
    # connection lost (database restart) fails one batch (503, retryable) and is
    # replaced on the next.
    eng = create_engine(url, future=True)
    if eng.dialect.name == "sqlite":
        @event.listens_for(eng, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return eng


def migrate(url: str) -> None:
    """Bring the database to the newest schema (safe to call from many processes)."""
    store = Store(url, migrate=False)
    try:
        store.migrate()  # takes the migration lock itself
    finally:
        store.close()


def load_monitor_config(settings: ServiceSettings) -> Any:
    """The live monitor's config (docs/monitoring.md), checked at start so a bad
    file stops it; ``None``: the defaults."""
    if settings.monitor is None:
        return None
    from tapshield.monitor.config import MonitorConfig

    if isinstance(settings.monitor, str):
        return MonitorConfig.load(settings.monitor)
    return MonitorConfig.from_mapping(dict(settings.monitor), source="config: monitor")


class ServiceRuntime:
    """One worker's running parts (see the module docstring)."""

    def __init__(self, settings: ServiceSettings, *, migrate_schema: bool = True,
                 decider: Decider | None = None) -> None:
        self.settings = settings
        self.url = settings.resolved_database_url()
        if migrate_schema:
            migrate(self.url)
        self.store = Store(self.url, migrate=False)
        self.engine = self.store.engine
        self.tap_engine = _tap_engine(self.store.url, settings.sqlite_synchronous)
        self.router_config = settings.router.to_router_config()
        self.monitor_config = load_monitor_config(settings)
        self.share: Any = None
        if settings.redis_url:
            from tapshield.share.redis import RedisShare

            self.share = RedisShare(settings.redis_url,
                                    namespace=f"{settings.redis_namespace}:route")
        self.router = Router(self.router_config, share=self.share)
        if decider is None:
            decider = (EngineDecider.from_settings(settings.risk) if settings.risk is not None
                       else RuleSetDecider(settings.decision))
        self.decider = decider
        self.metrics = ServiceMetrics()
        self.ledger = TapLedger(self.tap_engine, self.router, self.decider,
                                budget_ms=self.router_config.budget_ms,
                                on_batch=self.metrics.observe_batch,
                                record_events=settings.monitor_enabled)
        if isinstance(self.decider, EngineDecider):
            self.ledger.listeners.append(self.decider)  # step-up results feed its state
        self.keys = KeyStore(settings.keys_file)
        self.limiter = RateLimiter(settings.limits.rate_limits)
        self.silences = SilenceStore(self.engine)
        self.desk = IncidentDesk(self.engine)
        self.checkpoints = Checkpoints(self.engine)
        self.audit = ServiceAudit(self.engine)
        self.inbox = Inbox(self.engine)
        self.watch: Watch | None = Watch(self) if settings.monitor_enabled else None
        self.registry = build_registry(self, RouterCollector(self.router))
        if self.watch is not None:
            self.registry.register(WatchCollector(self.watch))
        self.started_at = time.time()
        self.last_checkpoint: float | None = None
        self.restored_keys = 0
        self.ready = False
        self.draining = False
        self._stop = threading.Event()
        self._jobs: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._restore()
        self.sync_restrictions()
        self.audit.record("config.loaded", "service", "service", {
            "decision_version": self.decider.version,
            "decider": type(self.decider).__name__,
            "monitor": self.watch is not None, "redis": self.share is not None})
        if self.share is not None:
            self.share.sync()
            self.share.start(self.settings.share_interval_s)
        self.ledger.start()
        if self.watch is not None:
            self.watch.start()
        self._jobs = threading.Thread(target=self._background, name="tapshield-jobs",
                                      daemon=True)
        self._jobs.start()
        self.ready = True
        log.info("ready", extra={"restored_router_keys": self.restored_keys,
                                 "redis": self.share is not None,
                                 "database": self.engine.dialect.name})

    def stop(self) -> None:
        """Drain and checkpoint (the server has stopped taking requests)."""
        self.draining = True
        self.ledger.stop()
        if self.watch is not None:
            self.watch.stop()  # after the tap book: the last outcomes are in the inbox
        self._stop.set()
        if self._jobs is not None:
            self._jobs.join(5.0)
        if self.share is not None:
            self.share.stop()
            self.share.sync()
        ok = self.checkpoint()
        self.audit.close()
        log.info("stopped", extra={"checkpoint": ok})
        self.tap_engine.dispose()
        self.store.close()

    # -- state -------------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Write the router's health (and the Redis position it includes)."""
        doc = {"router": self.router.export_state(),
               "share_position": self.share.position if self.share is not None else None,
               "written_by": f"{self.settings.redis_namespace}"}
        try:
            self.checkpoints.save(ROUTER_CHECKPOINT, doc)
        except Exception:
            self.metrics.checkpoints.labels("error").inc()
            log.exception("router checkpoint failed")
            return False
        self.metrics.checkpoints.labels("ok").inc()
        self.last_checkpoint = time.time()
        return True

    def _restore(self) -> None:
        got = self.checkpoints.load(ROUTER_CHECKPOINT)
        if got is None:
            return
        taken_at, doc = got
        try:
            self.restored_keys = self.router.restore_state(doc["router"])
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("router checkpoint not usable; starting fresh",
                        extra={"error": str(exc)})
            return
        pos = doc.get("share_position")
        if self.share is not None and pos:
            self.share.seek(str(pos))
        log.info("router health restored", extra={"keys": self.restored_keys,
                                                  "taken_at": taken_at.isoformat()})

    # -- risk restrictions, shared by the workers through the database ------------

    def restrict(self, r: Any) -> None:
        """Store a restriction (every worker's engine applies it within seconds)."""
        self.checkpoints.save(f"{RESTRICTION_PREFIX}{r.kind}:{r.id}", r.to_dict())
        self.sync_restrictions()

    def lift(self, kind: str, id_: str, by: str) -> Any:
        assert isinstance(self.decider, EngineDecider)
        name = f"{RESTRICTION_PREFIX}{kind}:{id_}"
        stored = self.checkpoints.load(name)
        r = self.decider.engine.lift(kind, id_, by=by)
        if self.checkpoints.delete(name) and r is None and stored is not None:
            from tapshield.risk.engine import Restriction

            r = Restriction.from_dict(stored[1])  # set on a worker this one had not synced
        self.sync_restrictions()
        return r

    def sync_restrictions(self) -> None:
        if not isinstance(self.decider, EngineDecider):
            return
        from tapshield.risk.engine import Restriction

        stored = {}
        for _name, doc in self.checkpoints.load_prefix(RESTRICTION_PREFIX):
            r = Restriction.from_dict(doc)
            stored[(r.kind, r.id)] = r
        eng = self.decider.engine
        with eng._lock:
            for key in [k for k, r in eng.restrictions.items()
                        if r.by != "engine" and k not in stored]:
                del eng.restrictions[key]  # lifted on another worker
            for key, r in stored.items():
                eng.restrictions[key] = r

    def _background(self) -> None:
        interval = self.settings.checkpoint_interval_s
        next_purge = time.monotonic() + 60.0
        next_ckpt = time.monotonic() + interval
        while not self._stop.wait(min(interval, 2.0)):
            try:
                self.sync_restrictions()
            except Exception:
                log.exception("restriction sync failed")
            if time.monotonic() < next_ckpt:
                continue
            next_ckpt = time.monotonic() + interval
            self.checkpoint()
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + 3600.0
                try:
                    n = self.ledger.purge(self.settings.attempt_retention_days)
                    if n:
                        log.info("purged old answers", extra={"rows": n})
                    if self.watch is not None and self.watch.leader:
                        n = self.inbox.purge(self.settings.event_retention_days,
                                             self.watch.checkpointed_position)
                        if n:
                            log.info("purged monitored events", extra={"rows": n})
                except Exception:
                    log.exception("purge failed")

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))
            return True
        except Exception:
            return False

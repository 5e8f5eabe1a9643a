"""The service's one configuration file (YAML or TOML), environment on top.

Every part of ``tapshield serve`` is configured here: the database, Redis,
notification targets, the API keys file, the router, the monitor, the
decision rules and the operational limits. Precedence, highest first:

1. environment variables ``TAPSHIELD_<FIELD>``, nested with ``__``
   (``TAPSHIELD_REDIS_URL``, ``TAPSHIELD_LIMITS__MAX_BODY_BYTES=131072``);
2. the file given with ``--config`` (``.yaml``/``.yml`` or ``.toml``);
3. the defaults below, each with the reason it is the default.

With no file and no environment the service runs on a SQLite file in the
working directory, without Redis, keys in ``tapshield-keys.json`` beside it.
Validation errors name the field (``router.budget_ms: Input should be greater
than 0``) and the command exits 2 without a traceback.
"""

from __future__ import annotations

import contextvars
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from tapshield.errors import ContractError

CONFIG_ENV = "TAPSHIELD_CONFIG"
"""Path of the config file, for worker processes started by the server."""

ROLES: tuple[str, ...] = ("gateway", "operator", "risk", "credit", "partner", "read-only")
"""The API roles (see :mod:`tapshield.service.keys`)."""

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "tapshield_service_config", default=None)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelProfileSettings(_Strict):
    """Normal behaviour of one channel (see :class:`tapshield.route.ChannelProfile`)."""

    normal_failure_rate: float = Field(default=0.01, gt=0.0, lt=1.0)
    slow_ms: float = Field(default=3_000.0, gt=0.0)
    typical_ms: float = Field(default=300.0, gt=0.0)
    inquiry_ms: float = Field(default=400.0, gt=0.0)
    inquiry_timeout_ms: float = Field(default=1_500.0, gt=0.0)


class RouterSettings(_Strict):
    """The failover router (docs/routing.md); every number is a stated rate or cost."""

    order: tuple[str, ...] = ("nfc", "qr", "debit_card", "wallet")
    profiles: dict[str, ChannelProfileSettings] = Field(default_factory=dict)
    outage_failure_rate: float = Field(default=0.5, gt=0.0, lt=1.0)
    false_elimination_every: float = Field(default=1_000_000.0, gt=1.0)
    false_readmission: float = Field(default=0.001, gt=0.0, lt=1.0)
    half_life_s: float = Field(default=300.0, gt=0.0)
    probe_interval_s: float = Field(default=1.0, gt=0.0)
    heartbeat_after_s: float = Field(default=60.0, gt=0.0)
    budget_ms: float = Field(default=15_000.0, gt=0.0)
    give_up_below: float = Field(default=0.05, ge=0.0, lt=1.0)
    regional: bool = True

    @field_validator("order")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for ch in v:
            if not _CHANNEL_RE.match(ch):
                raise ValueError(f"channel {ch!r}: 1-64 letters, digits, _ . : -")
        return v

    def to_router_config(self) -> Any:
        """The domain :class:`~tapshield.route.RouterConfig` (its own checks apply)."""
        from tapshield.route.config import ChannelProfile, RouterConfig

        data = self.model_dump()
        profiles = {ch: ChannelProfile(**p) for ch, p in data.pop("profiles").items()}
        return RouterConfig(profiles=profiles, **data)


_CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

DecisionName = Literal["approve", "step_up", "decline"]
MATCH_FIELDS = ("user_id", "device_id", "merchant_id", "region", "carrier", "os",
                "app_version", "device_model", "merchant_category")
"""Request fields a decision rule may list values of."""


class DecisionRule(_Strict):
    """One rule: when every condition holds, the decision applies.

    ``when`` lists, per request field, the values that match (any of them);
    ``amount_at_least`` / ``amount_below`` are decimal yuan.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    decision: DecisionName
    reason: str = Field(default="", max_length=200)
    when: dict[str, list[str]] = Field(default_factory=dict)
    amount_at_least: Decimal | None = Field(default=None, ge=0, decimal_places=2)
    amount_below: Decimal | None = Field(default=None, ge=0, decimal_places=2)

    @field_validator("when")
    @classmethod
    def _fields(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(MATCH_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: "
                             f"{', '.join(MATCH_FIELDS)}")
        return v


class DecisionSettings(_Strict):
    """The interim decision rule set (until the risk engine, issue 14, plugs in).

    The most severe decision among matching rules wins (decline > step_up >
    approve), with every matching rule of that severity as a reason; no
    matching rule gives ``default``.
    """

    default: DecisionName = "approve"
    rules: list[DecisionRule] = Field(default_factory=list)
    version: str = Field(default="rules-1", max_length=64)
    """Carried on every answer, so a diagnosis can name the rule set."""


class RiskSettings(_Strict):
    """The risk engine behind ``POST /v1/authorize`` (docs/risk.md)."""

    model_dir: Path | None = None
    """A directory from ``tapshield risk train``; unset: rules only (no model)."""
    rules_file: Path | None = None
    """Rules YAML with allow and deny lists (docs/risk.md)."""
    model_mode: Literal["active", "shadow"] = "active"


class RateLimit(_Strict):
    per_second: float = Field(gt=0.0)
    burst: float = Field(gt=0.0)


def _default_rates() -> dict[str, RateLimit]:
    # The gateway calls once per attempt; the others are people and tools.
    people = RateLimit(per_second=50.0, burst=100.0)
    return {"gateway": RateLimit(per_second=20_000.0, burst=40_000.0),
            **{r: people for r in ROLES if r != "gateway"}}


class LimitSettings(_Strict):
    """Protection of the service itself."""

    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    """An authorize request is a few hundred bytes; anything near this is abuse."""
    max_concurrency: int = Field(default=2_048, gt=0)
    """Requests in flight per worker before new ones get 503 at once."""
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rates)
    """Per API key, by role (a key file entry may override its own)."""
    drain_timeout_s: float = Field(default=20.0, gt=0.0)
    """SIGTERM: how long in-flight requests get to finish before the process stops."""

    @field_validator("rate_limits")
    @classmethod
    def _roles(cls, v: dict[str, RateLimit]) -> dict[str, RateLimit]:
        unknown = sorted(set(v) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}")
        return {**_default_rates(), **v}


class WebhookTarget(_Strict):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class ConsoleSettings(_Strict):
    """The web console (``/console``, :mod:`tapshield.console`)."""

    enabled: bool = True
    impact_file: Path | None = None
    """``impact.json`` of ``tapshield analyze --portfolio`` for the Impact page; relative
    paths as for ``keys_file``."""
    risk_dir: Path | None = None
    """Output directory of ``tapshield risk backtest`` for the Risk page (optional)."""
    session_hours: float = Field(default=8.0, gt=0.0, le=24.0 * 30)
    """A signed-in browser session lasts one shift by default."""
    passkey_for_actions: bool = True
    """Acknowledge, assign, note, resolve and silence need a passkey sign-in (user
    verified); an API-key sign-in only reads."""
    rp_id: str | None = None
    """WebAuthn relying-party id (the host name people use); default: the request's host."""
    origins: list[str] = Field(default_factory=list)
    """Origins accepted in WebAuthn ceremonies; default: ``public_url`` and the request's."""


class ServiceSettings(BaseSettings):
    """Everything ``tapshield serve`` reads (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="TAPSHIELD_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    database_url: str | None = None
    """SQLAlchemy URL; default ``TAPSHIELD_DB_URL`` or ``tapshield.db`` in the working dir."""
    redis_url: str | None = None
    """Router health shared between workers; without it each worker routes alone."""
    redis_namespace: str = Field(default="tapshield", min_length=1, max_length=64)
    keys_file: Path = Path("tapshield-keys.json")
    """Hashed API keys (``tapshield keys create`` appends to it); relative to the
    config file's directory when given there, else to the working directory."""
    alertmanager: list[str] = Field(default_factory=list)
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    monitor: str | dict[str, Any] | None = None
    """Monitoring config: a YAML file path or the same keys inline (docs/monitoring.md)."""
    router: RouterSettings = RouterSettings()
    decision: DecisionSettings = DecisionSettings()
    risk: RiskSettings | None = None
    """The risk engine decides instead of ``decision`` when set (``risk: {}``: rules
    only with no rules file: approve everything unless restricted)."""
    limits: LimitSettings = LimitSettings()
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    """SQLite only. ``normal`` (WAL): an answer survives the process crashing or
    restarting, not a power cut of the machine (the last commits may roll back);
    ``full`` also survives that, at one disk flush per transaction. Production
    runs PostgreSQL, which flushes every commit."""
    workers: int = Field(default=1, ge=1, le=64)
    checkpoint_interval_s: float = Field(default=10.0, gt=0.0)
    """Router health is written to the database this often (and at shutdown)."""
    share_interval_s: float = Field(default=0.05, gt=0.0)
    """Redis sync period of the router's shared health."""
    attempt_retention_days: float = Field(default=35.0, gt=0.0)
    """Answers kept for idempotent replays (a chargeback window, not forever)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_requests: bool = True
    """One JSON line per request (request id, route, status, duration, key id)."""
    public_url: str = "http://127.0.0.1:8080"
    """How people reach this service (links in alerts point here)."""
    monitor_enabled: bool = True
    """Run the live monitor over ``POST /v1/events`` and the reported outcomes."""
    monitor_lateness_s: float = Field(default=5.0, ge=0.0)
    """How long the monitor waits for out-of-order events (a live feed's lag)."""
    monitor_poll_interval_s: float = Field(default=0.5, gt=0.0)
    monitor_checkpoint_interval_s: float = Field(default=30.0, gt=0.0)
    """The monitor's whole state is written this often (and at shutdown)."""
    monitor_skip_backlog: bool = False
    """A monitor starting without a usable checkpoint reads the inbox from its
    start (``false``, nothing is missed) or only what arrives from now on."""
    event_retention_days: float = Field(default=7.0, gt=0.0)
    """Inbox rows the monitor has checkpointed past are deleted after this long."""
    checkpoint_key_file: Path = Path("tapshield-checkpoint.key")
    """The key signing the monitor's checkpoints, outside the database (created on
    first start, mode 0600; relative paths like ``keys_file``)."""
    heartbeat_interval_s: float = Field(default=60.0, gt=0.0)
    """The Watchdog alert to Alertmanager (and re-sends of firing alerts) this often."""
    runbook_url: str | None = None
    """Runbook link per cause in alerts; ``{cause}`` is filled in. Default: this
    service's ``/runbooks/{cause}``."""
    max_events_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """``POST /v1/events`` bodies may be this large (a batch of ~20,000 events)."""
    console: ConsoleSettings = ConsoleSettings()

    @field_validator("alertmanager")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not re.match(r"^https?://", u):
                raise ValueError(f"{u!r} is not an http(s) URL")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    # -- derived ---------------------------------------------------------------

    def resolved_checkpoint_key_file(self) -> Path:
        """Beside the keys file when relative (both are secrets outside the database)."""
        p = self.checkpoint_key_file
        return p if p.is_absolute() else self.keys_file.parent / p

    def resolved_database_url(self) -> str:
        from tapshield.storage import default_url

        return self.database_url or default_url()


def load_settings(path: Path | str | None = None, **overrides: Any) -> ServiceSettings:
    """Read the config file (if any) under the environment; one clear error if bad.

    ``path`` defaults to ``$TAPSHIELD_CONFIG``. Relative ``keys_file`` and
    ``monitor`` paths in the file are taken relative to the file.
    """
    if path is None and os.environ.get(CONFIG_ENV):
        path = os.environ[CONFIG_ENV]
    p = Path(path).resolve() if path is not None else None
    if p is not None:
        if not p.is_file():
            raise ContractError(f"{p}: no such config file")
        if p.suffix not in (".yaml", ".yml", ".toml"):
            raise ContractError(f"{p}: the config file must be .yaml, .yml or .toml")
    token = _CONFIG_FILE.set(p)
    try:
        settings = ServiceSettings(**overrides)
    except ValidationError as exc:
        raise ContractError(_explain(exc, p)) from None
    except (ValueError, OSError, yaml.YAMLError) as exc:  # unreadable YAML / TOML
        raise ContractError(f"{p}: not a readable config file: "
                            f"{' '.join(str(exc).split())}") from None
    finally:
        _CONFIG_FILE.reset(token)
    if p is not None:
        base = p.parent
        changes: dict[str, Any] = {}
        if not settings.keys_file.is_absolute() and "TAPSHIELD_KEYS_FILE" not in os.environ:
            changes["keys_file"] = base / settings.keys_file
        if isinstance(settings.monitor, str) and not Path(settings.monitor).is_absolute():
            changes["monitor"] = str(base / settings.monitor)
        if settings.risk is not None:
            rk: dict[str, Any] = {}
            for f in ("model_dir", "rules_file"):
                v = getattr(settings.risk, f)
                if v is not None and not v.is_absolute():
                    rk[f] = base / v
            if rk:
                changes["risk"] = settings.risk.model_copy(update=rk)
        con = settings.console
        rel = {k: base / v for k, v in (("impact_file", con.impact_file),
                                         ("risk_dir", con.risk_dir))
               if v is not None and not v.is_absolute()}
        if rel:
            changes["console"] = con.model_copy(update=rel)
        if changes:
            settings = settings.model_copy(update=changes)
    try:
        settings.router.to_router_config()
    except ValueError as exc:
        raise ContractError(f"{p or 'config'}: router: {exc}") from None
    return settings


def _explain(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path is not None else "config"
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {' '.join(str(err['msg']).split())}")
    more = exc.error_count() - len(parts)
    return f"{where}: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")

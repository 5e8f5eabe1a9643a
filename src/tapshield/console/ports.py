"""What the console needs from the service that mounts it, as structural types.

The service imports the console (one line in its app mounts the routes); the
console never imports the service back, or the two packages would form an
import cycle. It names here the few things it reads: the service's
``ServiceRuntime`` satisfies :class:`Runtime` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine


class Principal(Protocol):
    @property
    def key_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def name(self) -> str: ...


class Keys(Protocol):
    def authenticate(self, key: str) -> Principal | None: ...
    def principal(self, key_id: str) -> Principal | None: ...


class Desk(Protocol):
    def find(self, *, status: str | None = None, level_at_most: int | None = None,
             cause: str | None = None, since: datetime | None = None, limit: int = 100,
             offset: int = 0, partner: Mapping[str, str] | None = None
             ) -> tuple[list[dict[str, Any]], int]: ...
    def get(self, incident_id: str) -> dict[str, Any] | None: ...
    def act(self, incident_id: str, action: str, actor: str, *, assignee: str | None = None,
            note: str | None = None) -> dict[str, Any]: ...
    def alerts(self, *, incident_id: str | None = None, alert_id: str | None = None,
               state: str | None = None, since: datetime | None = None, limit: int = 100,
               offset: int = 0) -> tuple[list[dict[str, Any]], int]: ...


class SilenceLike(Protocol):
    @property
    def id(self) -> str: ...


class Silences(Protocol):
    def silence_labels(self, labels: Mapping[str, str], starts_at: datetime,
                       ends_at: datetime, created_by: str, comment: str) -> SilenceLike: ...


class Router(Protocol):
    def snapshot(self, now: float) -> list[dict[str, Any]]: ...


class RouterConfig(Protocol):
    @property
    def order(self) -> Sequence[str]: ...


class ConsoleSettings(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def impact_file(self) -> Path | None: ...
    @property
    def risk_dir(self) -> Path | None: ...
    @property
    def session_hours(self) -> float: ...
    @property
    def passkey_for_actions(self) -> bool: ...
    @property
    def rp_id(self) -> str | None: ...
    @property
    def origins(self) -> list[str]: ...


class Rule(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def when(self) -> dict[str, list[str]]: ...


class Decisions(Protocol):
    @property
    def rules(self) -> Sequence[Rule]: ...
    @property
    def version(self) -> str: ...


class Settings(Protocol):
    @property
    def console(self) -> ConsoleSettings: ...
    @property
    def keys_file(self) -> Path: ...
    @property
    def public_url(self) -> str: ...
    @property
    def decision(self) -> Decisions: ...


class Runtime(Protocol):
    """The service's runtime as the console reads it."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def keys(self) -> Keys: ...
    @property
    def desk(self) -> Desk: ...
    @property
    def silences(self) -> Silences: ...
    @property
    def router(self) -> Router: ...
    @property
    def router_config(self) -> RouterConfig: ...
    @property
    def draining(self) -> bool: ...

"""Runtime silences, the way Prometheus Alertmanager keeps them.

A silence is a set of label matchers with a time range: an alert whose labels
all match is muted between ``starts_at`` and ``ends_at``. Matchers are
Alertmanager's four (``=``, ``!=``, ``=~``, ``!~``: ``is_equal`` and
``is_regex``), regexes fully anchored, a missing label matching as the empty
string. Deleting a silence expires it (its end becomes now) and keeps it for
the record, as Alertmanager does.

They are stored in ``service_silences``; :meth:`SilenceStore.active` and
:meth:`Silence.mutes` are what the live monitor's suppression stage will ask
in phase 2.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, insert, select, update

from tapshield.service import tables as t


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        hit = (re.fullmatch(self.value, got) is not None) if self.is_regex else got == self.value
        return hit if self.is_equal else not hit

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "is_regex": self.is_regex,
                "is_equal": self.is_equal}


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    updated_at: datetime

    def status(self, now: datetime) -> str:
        if now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        """Whether an alert with ``labels`` is muted by this silence at ``now``."""
        return self.status(now) == "active" and all(m.matches(labels) for m in self.matchers)

    @cached_property
    def _doc(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": [m.to_dict() for m in self.matchers],
                "starts_at": self.starts_at, "ends_at": self.ends_at,
                "created_by": self.created_by, "comment": self.comment,
                "created_at": self.created_at, "updated_at": self.updated_at}

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {**self._doc, "status": self.status(now)}


def _from_row(r: Any) -> Silence:
    return Silence(r["id"], tuple(Matcher(**m) for m in r["matchers"]), r["starts_at"],
                   r["ends_at"], r["created_by"], r["comment"], r["created_at"],
                   r["updated_at"])


class SilenceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, matchers: Sequence[Matcher], starts_at: datetime, ends_at: datetime,
               created_by: str, comment: str) -> Silence:
        now = datetime.now(UTC)
        row = {"id": str(uuid.uuid4()), "matchers": [m.to_dict() for m in matchers],
               "starts_at": starts_at, "ends_at": ends_at, "created_by": created_by,
               "comment": comment, "created_at": now, "updated_at": now}
        with self.engine.begin() as conn:
            conn.execute(insert(t.silences).values(**row))
        return _from_row(row)

    def silence_labels(self, labels: Mapping[str, str], starts_at: datetime,
                       ends_at: datetime, created_by: str, comment: str) -> Silence:
        """A silence matching exactly these label values (the console's Silence button
        silences an incident's alert slice this way)."""
        return self.create([Matcher(k, v) for k, v in labels.items()], starts_at, ends_at,
                           created_by, comment)

    def get(self, silence_id: str) -> Silence | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.silences).where(t.silences.c.id == silence_id)
                             ).mappings().first()
        return _from_row(r) if r is not None else None

    def expire(self, silence_id: str) -> Silence | None:
        """End the silence now (an expired or unknown one is returned as is / None)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(update(t.silences)
                         .where(t.silences.c.id == silence_id, t.silences.c.ends_at > now)
                         .values(ends_at=now, updated_at=now))
        return self.get(silence_id)

    def find(self, *, include_expired: bool = True, limit: int = 500) -> list[Silence]:
        q = select(t.silences).order_by(t.silences.c.created_at.desc()).limit(limit)
        if not include_expired:
            q = q.where(t.silences.c.ends_at > datetime.now(UTC))
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(q).mappings()]

    def active(self, now: datetime | None = None) -> list[Silence]:
        """Silences in force at ``now`` (what the monitor's suppression reads)."""
        now = now or datetime.now(UTC)
        return [s for s in self.find(include_expired=False) if s.status(now) == "active"]

"""Event-time helpers shared by every stage.

Inside frames all instants are ``Datetime("us", "UTC")``. Operators read times
in the business's local zone (the default is ``Asia/Shanghai``, the zone of the
card networks this product runs on); outputs are RFC 3339 with that offset so
an on-call engineer never has to convert in their head.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

DEFAULT_TZ = "Asia/Shanghai"
TS_DTYPE = pl.Datetime("us", "UTC")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def zone(name: str | None = None) -> ZoneInfo:
    return ZoneInfo(name or DEFAULT_TZ)


def to_rfc3339(ts: datetime, tz: str | None = None) -> str:
    """Format an aware datetime as RFC 3339 with milliseconds in ``tz``."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: tapshield only handles aware instants")
    local = ts.astimezone(zone(tz))
    return local.isoformat(timespec="milliseconds")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 instant (offset or ``Z`` required) or epoch milliseconds."""
    s = text.strip()
    if s.isdigit():
        return _EPOCH + timedelta(milliseconds=int(s))
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s.replace(" ", "T", 1))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset is ambiguous: {text!r}")
    return dt.astimezone(UTC)


def utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("naive datetime: tapshield only handles aware instants")
    return ts.astimezone(UTC)


def epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch: the integer behind ``TS_DTYPE``."""
    delta = utc(ts) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


_TERM = r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)"
_DURATION_RE = re.compile(rf"^(?:{_TERM}\s*)+$")
_TERM_RE = re.compile(_TERM)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HELP = "a number of seconds or text like '500ms', '90s', '45m', '1h30m', '2d', '1w'"


def parse_duration(value: object) -> timedelta:
    """The one duration grammar of every tapshield YAML file and option.

    A number of seconds (``90``, ``0.5``), or one or more ``<number><unit>``
    terms with units ``ms``, ``s``, ``m``/``min``, ``h``, ``d``, ``w``, summed:
    ``500ms``, ``10s``, ``5 m``, ``1h30m``, ``1.5h``, ``2d``, ``1w``. Never
    negative. A ``timedelta`` passes through. Raises ``ValueError`` saying
    what is accepted; callers add where the value came from.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} ({DURATION_HELP})")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r} ({DURATION_HELP})")
        return timedelta(seconds=float(value))
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION_RE.match(text):
            raise ValueError(f"not a duration: {value!r} ({DURATION_HELP})") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _TERM_RE.findall(text))
    else:
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"not a duration: {value!r} ({DURATION_HELP})")
    return timedelta(seconds=seconds)

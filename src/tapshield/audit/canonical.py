"""Canonical JSON: one byte string per record, so anyone can recompute a leaf.

A leaf is the UTF-8 encoding of a JSON object with sorted keys, no
whitespace, no floats and no NaN: money is integer fen or a decimal string,
never a binary fraction that two languages print differently. For the values
allowed here (strings, integers, booleans, null, arrays and objects with
string keys) this is the output of RFC 8785 (JCS) as long as keys stay in the
Basic Multilingual Plane and integers within +-2**53, which is what a partner
re-implementing the check in another language should rely on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeAlias

from tapshield.audit.merkle import leaf_hash

JsonValue: TypeAlias = "bool | int | str | list[JsonValue] | dict[str, JsonValue] | None"

_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


def _fast_dumps() -> Any:
    """The C encoder built once (``JSONEncoder.encode`` builds one per call): the same
    output as ``_dumps`` for normalised values, which hold no cycles by construction."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return _dumps
    enc = make(None, None, json.encoder.encode_basestring, None, ":", ",", True, False, False)

    def dumps(value: Any) -> str:
        if type(value) is str:
            return str(json.encoder.encode_basestring(value))
        return "".join(enc(value, 0))

    return dumps


_cdumps = _fast_dumps()


class CanonicalError(ValueError):
    """A value that has no canonical form (a float, a NUL, a non-string key...)."""


def normalise(value: Any, path: str = "$") -> JsonValue:
    """A JSON-safe copy of ``value``; the exact form that is hashed and stored.

    ``Decimal`` becomes its string (``"12.50"``), aware datetimes RFC 3339 in
    UTC with microseconds, dates ISO 8601, enums their value; tuples and sets
    are not accepted implicitly (their order is not data) except tuples, kept
    as lists. Floats are refused: a float in an audit record is a bug.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise CanonicalError(f"{path}: NUL characters cannot be stored")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError(f"{path}: not valid Unicode text") from None
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CanonicalError(f"{path}: {value} is not a number")
        return str(value)
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed in audit records "
                             "(use integer fen or a Decimal)")
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return normalise(value.value, path)
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalError(f"{path}: object keys must be strings, not {k!r}")
            normalise(k, path)
            out[k] = normalise(v, f"{path}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [normalise(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise CanonicalError(f"{path}: {type(value).__name__} has no canonical JSON form")


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with exactly six fractional digits: ``2026-12-05T02:00:00.000000Z``."""
    if ts.tzinfo is None:
        raise CanonicalError("naive datetime: audit times are aware instants")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(value: JsonValue) -> bytes:
    """Canonical bytes of an already normalised value."""
    return _dumps(value).encode("utf-8")


def _plain(value: Any) -> bool:
    """True if ``value`` is already in canonical form (the common case, checked fast:
    scalars are tested inline, only containers recurse)."""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or "\x00" in k:
                return False
            tv = type(v)
            if tv is str:
                if "\x00" in v:
                    return False
            elif not (tv is int or tv is bool or v is None
                      or ((tv is dict or tv is list) and _plain(v))):
                return False
        return True
    if t is list:
        for v in value:
            tv = type(v)
            if tv is str:
                if "\x00" in v:
                    return False
            elif not (tv is int or tv is bool or v is None
                      or ((tv is dict or tv is list) and _plain(v))):
                return False
        return True
    if t is str:
        return "\x00" not in value
    return t is int or t is bool or value is None


def payload_text(payload: Any) -> tuple[JsonValue, str]:
    """``(normalised payload, its canonical JSON text)``; raises :class:`CanonicalError`.

    Payloads built of dicts, lists, strings, integers, booleans and null (what
    tapshield's own records are) skip the conversion walk.
    """
    value: JsonValue = payload if _plain(payload) else normalise(payload)
    text: str = _cdumps(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("the payload holds text that is not valid Unicode") from None
    return value, text


_str = json.encoder.encode_basestring


def leaf_text(seq: int, ts: str, kind: str, actor: str, subject: str, payload: str) -> str:
    """Leaf ``seq`` from its parts already in canonical form (``ts`` from
    :func:`format_ts`, ``payload`` from :func:`payload_text`): the same text as
    ``dumps`` of the leaf object, without encoding the payload twice."""
    return (f'{{"actor":{_str(actor)},"kind":{_str(kind)},"payload":{payload},"seq":{seq},'
            f'"subject":{_str(subject)},"ts":"{ts}","v":1}}')


def leaf_bytes(
    seq: int, ts: datetime, kind: str, actor: str, subject: str, payload: JsonValue
) -> bytes:
    """The bytes of leaf ``seq``: what is hashed, what a verifier rebuilds from a row."""
    return leaf_text(seq, format_ts(ts), kind, actor, subject, _dumps(payload)).encode("utf-8")


def leaf_object(
    seq: int, ts: datetime, kind: str, actor: str, subject: str, payload: JsonValue
) -> dict[str, JsonValue]:
    """The leaf as a JSON object (the specification :func:`leaf_text` is tested against)."""
    return {"actor": actor, "kind": kind, "payload": payload, "seq": seq, "subject": subject,
            "ts": format_ts(ts), "v": 1}


def entry_hash(
    seq: int, ts: datetime, kind: str, actor: str, subject: str, payload: JsonValue
) -> bytes:
    return leaf_hash(leaf_bytes(seq, ts, kind, actor, subject, payload))

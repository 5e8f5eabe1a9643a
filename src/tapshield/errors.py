"""Errors every contract shares: file-level problems and row-level rule breaks."""

from __future__ import annotations

from dataclasses import dataclass


def clip(s: str, n: int = 60) -> str:
    """Shorten a value for a one-line message."""
    return s if len(s) <= n else s[: n - 3] + "..."


PERSONAL_COLUMNS: frozenset[str] = frozenset({"user_id", "device_id"})
"""Input columns that identify a person: messages and reject files show them masked
(docs/trust.md). Merchant ids name businesses and stay as sent."""


def mask_value(value: str) -> str:
    """``u142424`` -> ``u1***24``: recognisable by the person who sent it, useless to
    anyone else. (``tapshield.privacy.mask`` builds its display forms on this.)"""
    if len(value) <= 4:
        return "*" * len(value)
    if len(value) <= 6:
        return f"{value[0]}***"
    return f"{value[:2]}***{value[-2:]}"


def redact(column: str, value: str | None) -> str | None:
    """What a message or a rejects file may show of ``value`` in ``column``: personal
    identifiers masked, a whole unsplittable record (column ``*``) withheld."""
    if value is None:
        return None
    if column in PERSONAL_COLUMNS:
        return mask_value(value)
    if column == "*":
        return f"<record of {len(value)} characters withheld: it may hold personal data>"
    return value


class ContractError(ValueError):
    """A file-level problem: unreadable input or a missing required column.

    Raised before any row is accepted, so nothing is half-processed; the CLI
    turns it into a one-line message and a non-zero exit.
    """


class SetupError(Exception):
    """The environment a command needs cannot be used: a database URL that does
    not parse or does not answer, a file that is not a database, an output
    path that cannot be written. Like :class:`ContractError`, one line on
    stderr and exit 2, never a traceback."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One broken rule on one row: enough to find and fix it at the source."""

    row: int
    column: str
    rule: str
    value: str | None

    def __str__(self) -> str:
        value = redact(self.column, self.value)
        shown = "<empty>" if value is None else repr(clip(value))
        return f"row {self.row}, column {self.column!r}: rule {self.rule} (value {shown})"

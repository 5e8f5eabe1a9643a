"""Errors every contract shares: file-level problems and row-level rule breaks."""

from __future__ import annotations

from dataclasses import dataclass


def clip(s: str, n: int = 60) -> str:
    """Shorten a value for a one-line message."""
    return s if len(s) <= n else s[: n - 3] + "..."


class ContractError(ValueError):
    """A file-level problem: unreadable input or a missing required column.

    Raised before any row is accepted, so nothing is half-processed; the CLI
    turns it into a one-line message and a non-zero exit.
    """


@dataclass(frozen=True, slots=True)
class RowError:
    """One broken rule on one row: enough to find and fix it at the source."""

    row: int
    column: str
    rule: str
    value: str | None

    def __str__(self) -> str:
        shown = "<empty>" if self.value is None else repr(clip(self.value))
        return f"row {self.row}, column {self.column!r}: rule {self.rule} (value {shown})"

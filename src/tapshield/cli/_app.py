"""The Typer application, the shared console and the error/exit-code policy.

Exit codes (every command):

* ``0`` success;
* ``1`` the command ran but input rows were rejected beyond ``--max-rejects``
  (outputs are still written; the summary and the rejects file say which);
* ``2`` the command could not run: unreadable file, missing required column,
  bad option. One line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tapshield import __version__
from tapshield.errors import ContractError, SetupError

EXIT_OK = 0
EXIT_REJECTS = 1
EXIT_USAGE = 2

PIPED_WIDTH = 120
"""Columns when the output is a file, a pipe or a CI log (Rich assumes 80 there,
which folds the incident and scorecard tables into unreadable slivers).
``COLUMNS`` still wins."""


def _console(stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    if probe.is_terminal or "COLUMNS" in os.environ:
        return probe
    return Console(stderr=stderr, width=PIPED_WIDTH)


console = _console()
err_console = _console(stderr=True)

app = typer.Typer(
    name="tapshield",
    help="Keep consumer-credit tap-to-pay working and safe: watch, diagnose, respond, "
    "protect, quantify, rehearse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"tapshield {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """tapshield command line."""


P = ParamSpec("P")
R = TypeVar("R")


class UsageError(Exception):
    """A problem with the command line or its inputs, reported in one line."""


def esc(value: object) -> str:
    """A data value for a Rich markup string or table cell, shown as it is.

    Every value that comes from input (ids, paths, amounts, scopes, messages
    that quote a value) goes through here: ``[/x]`` would crash Rich and
    ``[bold]1[/bold]`` would print as ``1``.
    """
    return escape(str(value))


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ContractError, UsageError, SetupError, FileNotFoundError,
                IsADirectoryError) as exc:
            raise fail(str(exc)) from None
        except PermissionError as exc:
            raise fail(f"permission denied: {exc.filename}") from None
        except OSError as exc:  # full disk, an output path that is a file, ...
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `tapshield ... | head`
        sys.stderr.close()

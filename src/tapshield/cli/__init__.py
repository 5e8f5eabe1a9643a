"""The ``tapshield`` command line (Typer + Rich).

Each command lives in its own module and registers itself on :data:`app`;
the modules are thin: they parse options, call the domain packages and print.
"""

from __future__ import annotations

from tapshield.cli._app import app, main

# Importing a command module registers its command on ``app``.
from tapshield.cli import validate as _validate  # noqa: F401  isort: skip
from tapshield.cli import analyze as _analyze  # noqa: F401  isort: skip
from tapshield.cli import demo as _demo  # noqa: F401  isort: skip
from tapshield.cli import simulate as _simulate  # noqa: F401  isort: skip
from tapshield.cli import drill as _drill  # noqa: F401  isort: skip
from tapshield.cli import impact as _impact  # noqa: F401  isort: skip
from tapshield.cli import localize as _localize  # noqa: F401  isort: skip
from tapshield.cli import route as _route  # noqa: F401  isort: skip
from tapshield.cli import detect as _detect  # noqa: F401  isort: skip
from tapshield.cli import live as _live  # noqa: F401  isort: skip
from tapshield.cli import serve as _serve, keys as _keys  # noqa: F401  isort: skip
from tapshield.cli import risk as _risk  # noqa: F401  isort: skip
from tapshield.cli import audit as _audit  # noqa: F401  isort: skip
from tapshield.cli import privacy as _privacy  # noqa: F401  isort: skip
from tapshield.cli import stream as _stream  # noqa: F401  isort: skip

__all__ = ["app", "main"]

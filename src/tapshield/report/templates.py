"""The one Jinja2 environment of tapshield's HTML reports.

Both reports (``report.html`` of an analysis, ``impact.html`` of a valuation)
load their templates from ``tapshield/report/templates`` through this
environment: autoescaping on, and an undefined name is an error rather than
an empty string, so a renamed field fails a test instead of silently blanking
part of a report.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2


@cache
def environment() -> jinja2.Environment:
    from tapshield.report.present import LEVEL_GLYPHS, count, percent, yuan

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tapshield.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # The presentation rules the console uses too: yuan with thousands separators
    # (exact), counts with separators, the level shapes that work without colour.
    env.filters["yuan"] = yuan
    env.filters["count"] = count
    env.filters["percent"] = percent
    env.globals["level_glyphs"] = LEVEL_GLYPHS
    return env


@cache
def stylesheet() -> str:
    """The analysis report's inline CSS."""
    return resources.files("tapshield.report").joinpath("templates/base.css").read_text()

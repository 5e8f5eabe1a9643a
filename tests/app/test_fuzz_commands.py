"""The fuzz suite at the command entry points (issue 12): generated inputs through
``analyze``, ``impact``, ``drill --truth/--incidents`` and ``detect`` as a user
runs them. Whatever the input: no hang (the watchdog), no traceback, an exit
code the README documents (0, 1 or 2), accepted + rejected = rows read in the
completion marker, and an exit 2 leaves no output that looks complete.

Values include Rich markup (``[/x]``, ``[bold]1[/bold]``): a data value must
print as it is, never crash a command or lose its brackets.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from tapshield.cli import app
from tapshield.events.schema import WIRE_NAMES
from tests.events.helpers import GOOD
from tests.events.test_fuzz import _NASTY_TEXT, _NUMBERS, watchdog

runner = CliRunner()
COMMANDS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MARKUP = st.sampled_from(["[/x]", "[bold]1[/bold]", "[red]", "[/]", "\\[", "[link=x]y",
                          "a[b]c", "[[/x]]"])


def _value(column: str) -> st.SearchStrategy[str]:
    good = st.just(GOOD[column])
    return st.one_of(good, good, good, good, _NUMBERS, _NASTY_TEXT, MARKUP, st.just(""))


@st.composite
def events(draw: st.DrawFn) -> list[dict[str, str]]:
    n = draw(st.integers(0, 8))
    rows = []
    for i in range(n):
        row = {c: draw(_value(c)) for c in WIRE_NAMES}
        if draw(st.booleans()):
            row["event_id"] = f"e{i}"
        rows.append(row)
    return rows


def _clean_exit(res: Result) -> None:
    assert res.exit_code in (0, 1, 2), (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


def _write(rows: list[dict[str, str]], fmt: str, path: Path) -> None:
    if fmt == "csv":
        buf = io.StringIO()
        # CRLF: Python's writer then quotes a field holding a bare CR (with
        # "\n" it does not, and a bare CR ends a record in the contract's grammar)
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(WIRE_NAMES)
        for r in rows:
            w.writerow([r[c] for c in WIRE_NAMES])
        path.write_bytes(buf.getvalue().encode("utf-8"))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@COMMANDS
@given(events(), st.sampled_from(["csv", "jsonl"]))
def test_analyze_any_file_exits_as_documented_and_marks_completion(
    rows: list[dict[str, str]], fmt: str
) -> None:
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / f"e.{fmt}"
        _write(rows, fmt, path)
        out = Path(tmp) / "out"
        res = runner.invoke(app, ["analyze", str(path), "--out", str(out), "--db",
                                  f"sqlite:///{Path(tmp) / 'db.sqlite'}"])
        _clean_exit(res)
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert not [n for n in left if n.startswith(".tapshield-partial")], left
        if res.exit_code == 2:
            assert "summary.json" not in left, left
            return
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "complete"
        assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_rejected"]
        assert summary["rows_read"] == len(rows)
        assert (out / "rejects.csv").exists() == (summary["rows_rejected"] > 0)
        assert res.exit_code == (1 if summary["rows_rejected"] else 0)


_INCIDENT = {
    "id": "INC-1", "start": "2026-11-27T08:00:00+08:00", "end": "2026-11-27T08:01:00+08:00",
    "detected_at": "2026-11-27T08:00:30+08:00", "level": 2, "scope": [{"channel": "nfc"}],
    "cause": "interface", "confidence": 0.9, "evidence": ["x"], "failed_attempts": 1,
    "failed_payments": 1, "affected_users": 1, "affected_merchants": 1, "lost_amount": "1.00",
}
_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                  st.floats(allow_nan=True), _NASTY_TEXT, MARKUP, st.just([]), st.just({}))


@st.composite
def incident_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=40))
    doc = dict(_INCIDENT)
    for key in draw(st.lists(st.sampled_from(sorted(_INCIDENT)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del doc[key]
        else:
            doc[key] = draw(_JUNK)
    text = json.dumps([doc])
    if kind == 2:
        text = text[: draw(st.integers(0, len(text)))]
    data = text.encode()
    return data.decode().encode("latin-1", "replace") + b"\xe9" if kind == 3 else data


@COMMANDS
@given(data=incident_files())
def test_impact_and_drill_take_any_incidents_file(data: bytes, examples: Path) -> None:
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / "incidents.json"
        path.write_bytes(data)
        res = runner.invoke(app, ["impact", "--events", str(examples / "events-rfc3339.csv"),
                                  "--incidents", str(path), "--out", str(Path(tmp) / "o")])
        _clean_exit(res)
        truth = Path(tmp) / "truth.json"
        truth.write_text(json.dumps({"scenario": "x", "start": "2026-11-27T08:00:00+08:00",
                                     "end": "2026-11-27T09:00:00+08:00", "faults": []}))
        res = runner.invoke(app, ["drill", "--truth", str(truth), "--incidents", str(path)])
        _clean_exit(res)
        assert res.exit_code in (0, 2)


@COMMANDS
@given(st.lists(st.tuples(st.one_of(st.just("2026-11-27T08:00:00+08:00"), _NUMBERS, MARKUP,
                                    _NASTY_TEXT),
                          st.one_of(_NUMBERS, MARKUP, _NASTY_TEXT)), max_size=8))
def test_detect_takes_any_series(rows: list[tuple[str, str]]) -> None:
    with TemporaryDirectory() as tmp, watchdog():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
        path = Path(tmp) / "s.csv"
        path.write_text(buf.getvalue(), encoding="utf-8")
        res = runner.invoke(app, ["detect", str(path), "--time-col", "timestamp",
                                  "--value-col", "value", "--out", str(Path(tmp) / "r.csv")])
        _clean_exit(res)


def test_markup_in_a_value_is_printed_as_it_is(tmp_path: Path) -> None:
    row = dict(GOOD, event_id="e1", amount="[bold]1[/bold]")
    other = dict(GOOD, event_id="e2", amount="[/x]")
    path = tmp_path / "m.csv"
    _write([row, other], "csv", path)
    res = runner.invoke(app, ["validate", str(path), "--rejects", str(tmp_path / "r.csv")],
                        env={"COLUMNS": "200"})
    _clean_exit(res)
    assert res.exit_code == 1
    assert "'[bold]1[/bold]'" in res.output and "'[/x]'" in res.output

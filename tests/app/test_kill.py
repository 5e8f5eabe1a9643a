"""Crash safety of ``analyze`` (issue 12, class 6): killed with SIGKILL at random
points and run again, it leaves exactly the files of an uninterrupted run, byte
for byte, and a database where every run is finished or marked killed.

After every kill the output folder either has no ``summary.json`` (the
completion marker: nothing claims to be complete) or is a complete run's
outputs, identical to the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapshield.cli import app

NOT_OUTPUTS = {"tapshield.db", "tapshield.db.migrate.lock", "tapshield.db-wal",
               "tapshield.db-shm"}

# Runs ``tapshield analyze`` and kills it (a real SIGKILL, from inside) at a chosen
# point: the product code runs unchanged, only the moment of death is chosen.
_KILL_AT = """
import os, signal, sys

point = sys.argv[1]
def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point in ("migration", "first-write"):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    created = []
    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().startswith("CREATE TABLE"):
            created.append(statement)
        if point == "migration" and len(created) == 3:
            die()  # alembic_version and runs created, the rest not
        if point == "first-write" and statement.lstrip().startswith("INSERT INTO alerts"):
            die()
elif point.startswith("rename:") or point == "summary":
    import tapshield.app.outputs as outputs
    real, done = os.replace, []
    def replace(src, dst):
        # only the commit's renames: out of the staging folder into the output folder
        if "/.tapshield-partial-" in str(src) and "/.tapshield-partial-" not in str(dst):
            if point == "summary" and str(dst).endswith("/summary.json"):
                die()
            if point.startswith("rename:") and len(done) == int(point[7:]):
                die()
            done.append(dst)
        real(src, dst)
    outputs.os.replace = replace

sys.argv = ["tapshield", *sys.argv[2:]]
from tapshield.cli import main
main()
"""


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sim")
    r = CliRunner().invoke(app, ["simulate", "nfc-regional-outage", "--scale", "0.05",
                                 "--format", "csv", "--no-labels", "--out", str(d)])
    assert r.exit_code == 0, r.output
    return d / "events.csv", d / "changes.csv"


def _args(events: tuple[Path, Path], out: Path) -> list[str]:
    return ["analyze", str(events[0]), "--changes", str(events[1]), "--out", str(out),
            "--chunk-rows", "1500"]


def _cmd(events: tuple[Path, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "tapshield", *_args(events, out)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TAPSHIELD_DB_URL", None)
    return env


def _outputs(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and p.name not in NOT_OUTPUTS}


def _staging(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()] if folder.exists() else []


def _differences(got: dict[str, bytes], expected: dict[str, bytes]) -> str:
    """Which files differ and where: what a failure message needs to be acted on."""
    lines = []
    for name in sorted(set(got) | set(expected)):
        if name not in got:
            lines.append(f"{name}: missing")
        elif name not in expected:
            lines.append(f"{name}: not in the uninterrupted run ({len(got[name])} bytes)")
        elif got[name] != expected[name]:
            a, b = got[name], expected[name]
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
            lines.append(f"{name}: {len(a)} bytes vs {len(b)}, first difference at byte {at}: "
                         f"{a[max(0, at - 40):at + 40]!r} vs {b[max(0, at - 40):at + 40]!r}")
    return "; ".join(lines) or "no difference"


def _runs(folder: Path) -> list[tuple[str, str]]:
    """``(id, status)`` of every run in the folder's database, oldest first."""
    import sqlite3

    conn = sqlite3.connect(folder / "tapshield.db")
    try:
        return list(conn.execute("select id, status from runs order by started_at"))
    finally:
        conn.close()


@dataclass(frozen=True)
class Reference:
    folder: Path
    outputs: dict[str, bytes]
    seconds: float


@pytest.fixture(scope="module")
def reference(events: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The outputs of an uninterrupted run, and how long it took (kill times scale with it)."""
    folder = tmp_path_factory.mktemp("reference")
    t0 = time.monotonic()
    done = subprocess.run(_cmd(events, folder), env=_env(), capture_output=True, text=True,
                          timeout=600)
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    expected = _outputs(folder)
    assert {"summary.json", "incidents.json", "alerts.jsonl", "report.html"} <= set(expected)
    assert not _staging(folder)
    return Reference(folder, expected, took)


def _check_rerun(events: tuple[Path, Path], folder: Path, ref: Reference, ctx: str) -> None:
    """Run once more into ``folder``: the uninterrupted run's files, byte for byte, and a
    database where every earlier run is finished or marked killed."""
    again = subprocess.run(_cmd(events, folder), env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, f"{ctx}: the rerun exited {again.returncode}: {again.stderr}"
    got = _outputs(folder)
    assert got == ref.outputs, f"{ctx}: the rerun differs: {_differences(got, ref.outputs)}"
    assert not _staging(folder), f"{ctx}: a dead run's staging folder was left: " \
        f"{_staging(folder)}"
    runs = _runs(folder)
    statuses = [status for _, status in runs]
    assert statuses[-1] == "ok", f"{ctx}: run statuses {statuses}"
    assert set(statuses[:-1]) <= {"ok", "killed"}, f"{ctx}: run statuses {statuses}"

    from tapshield.storage import Store

    store = Store(f"sqlite:///{folder / 'tapshield.db'}")
    try:
        stored = [i.id for i in store.incidents(runs[-1][0])]
    finally:
        store.close()
    written = [d["id"] for d in json.loads(ref.outputs["incidents.json"])]
    assert stored == written, f"{ctx}: database incidents {stored} vs incidents.json {written}"


def _check_after_kill(folder: Path, ref: Reference, ctx: str) -> None:
    """A killed run leaves either no completion marker or a complete run's outputs."""
    got = _outputs(folder)
    if "summary.json" in got:
        assert got == ref.outputs, \
            f"{ctx}: a complete-looking folder differs: {_differences(got, ref.outputs)}"


def test_analyze_killed_at_random_points_then_rerun_is_byte_identical(
    events: tuple[Path, Path], reference: Reference, tmp_path: Path
) -> None:
    """Three ``kill -9`` at random moments of a run, then a rerun.

    The seed is in every failure message; ``TAPSHIELD_KILL_SEED=<seed>`` replays
    its kill times (as fractions of the uninterrupted run's duration).
    """
    seed = int(os.environ.get("TAPSHIELD_KILL_SEED", random.SystemRandom().randrange(10**6)))
    print(f"TAPSHIELD_KILL_SEED={seed}")  # shown with the captured output of a failure
    rng = random.Random(seed)
    folder = tmp_path / "killed"
    kills: list[str] = []
    for _ in range(3):
        proc = subprocess.Popen(_cmd(events, folder), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        after = rng.uniform(0.05, 1.0) * reference.seconds
        time.sleep(after)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=600)
        kills.append(f"{after:.2f}s:{'killed' if killed else f'exit {proc.returncode}'}")
        ctx = (f"seed {seed} (TAPSHIELD_KILL_SEED={seed} replays it), uninterrupted run "
               f"{reference.seconds:.2f}s, kills {kills}")
        assert killed or proc.returncode == 0, f"{ctx}: {err.decode(errors='replace')}"
        _check_after_kill(folder, reference, ctx)
    _check_rerun(events, folder, reference, ctx)


@pytest.mark.parametrize("point", [
    "migration",
    pytest.param("first-write", marks=pytest.mark.slow),
    pytest.param("rename:0", marks=pytest.mark.slow),
    pytest.param("rename:2", marks=pytest.mark.slow),
    pytest.param("summary", marks=pytest.mark.slow),
])
def test_analyze_killed_at_a_chosen_point_then_rerun_is_byte_identical(
    events: tuple[Path, Path], reference: Reference, tmp_path: Path, point: str
) -> None:
    """The moments the random kills rarely hit, each made certain: while the first
    start creates the SQLite schema (the random test's one failure: the schema was
    left without its version and no later start could open the database), at the
    first database write, after the run is recorded finished but before any output
    is moved into place, between those renames, and just before ``summary.json``
    is renamed. Each time into a folder holding a complete earlier run (except
    ``migration``: the first start). Only ``migration`` is in the default suite
    (each case is two full runs); ``-m slow`` runs the others."""
    folder = tmp_path / "out"
    if point != "migration":
        shutil.copytree(reference.folder, folder)
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, point, *_args(events, folder)],
                            env=_env(), capture_output=True, text=True, timeout=600)
    ctx = f"killed at {point}"
    assert killed.returncode == -signal.SIGKILL, f"{ctx}: {killed.returncode} {killed.stderr}"
    _check_after_kill(folder, reference, ctx)
    if point.startswith("rename:") or point == "summary":
        assert _runs(folder)[-1][1] == "ok", ctx  # recorded, then killed moving the files
    if point in ("rename:2", "summary"):
        assert "summary.json" not in _outputs(folder), ctx
    _check_rerun(events, folder, reference, ctx)
    if point != "migration":
        statuses = [status for _, status in _runs(folder)]
        assert statuses == ["ok", "killed" if point == "first-write" else "ok", "ok"], \
            f"{ctx}: {statuses}"


def test_sigterm_stops_analyze_cleanly_with_a_summary(
    events: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGTERM: stop reading, write everything (status interrupted), exit 0."""
    folder = tmp_path / "term"
    proc = subprocess.Popen([*_cmd(events, folder), "--chunk-rows", "200"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(folder.glob(".tapshield-partial-*/alerts.jsonl")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] in ("interrupted", "complete")
    for key in ("rows_read", "rows_accepted", "rows_rejected"):
        assert isinstance(summary[key], int)
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_rejected"]
    if summary["status"] == "interrupted":
        assert "interrupted" in out
    assert not _staging(folder)


def test_sigterm_closes_live_with_a_summary(tmp_path: Path, examples: Path) -> None:
    """``live`` under ``timeout``/systemd/Kubernetes: SIGTERM flushes the stream,
    writes summary.json (status interrupted, row counts) and exits 0. While it
    streams, the folder holds no completion marker: an earlier run's summary.json
    (and its other outputs) went before the first line was written."""
    import csv

    out = tmp_path / "live"
    out.mkdir()
    for name in ("summary.json", "report.html", "rejects.csv"):
        (out / name).write_text("an earlier run's\n")
    rows = list(csv.DictReader((examples / "events-rfc3339.csv").open()))[:50]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapshield", "live", "--out", str(out), "--quiet",
         "--batch-seconds", "0.2", "--no-diagnose"],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    assert proc.stdin is not None
    for r in rows:
        proc.stdin.write(json.dumps({k: v for k, v in r.items() if v != ""}) + "\n")
    proc.stdin.write("not json\n")
    proc.stdin.flush()  # the pipe stays open: only the signal ends the stream
    deadline = time.monotonic() + 300
    while not (out / "alerts.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not {"summary.json", "report.html", "rejects.csv"} & {p.name for p in out.iterdir()}
    time.sleep(2.0)
    json.loads((out / "incidents.json").read_text())  # rewritten whole, never half
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["rows_accepted"] == 50 and summary["rows_rejected"] == 1
    assert summary["rows_read"] == 51


def test_an_absurd_lateness_is_one_line_and_exit_2(tmp_path: Path, examples: Path) -> None:
    res = CliRunner().invoke(app, ["analyze", str(examples / "events-rfc3339.csv"), "--out",
                                   str(tmp_path / "o"), "--lateness", "1e300"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not (tmp_path / "o" / "summary.json").exists()

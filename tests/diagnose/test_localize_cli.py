"""``tapshield localize`` end to end: a real development case, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tapshield.cli import app

runner = CliRunner()

CASE = "case72_0324_1714649353.csv"  # two simultaneous root causes
AT = "1585009440"


def localize(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["localize", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def case(shared_data: Path) -> Path:
    path = shared_data / "localization-dev" / CASE
    if not path.exists():
        pytest.fail(f"development case missing: {path}")
    return path


def base_args(table: Path) -> list[str]:
    return [str(table), "--time-col", "min", "--dims", "cdn,p2p,bitrate,device",
            "--failures", "value", "--total", "cnt", "--at", AT]


def test_development_case_from_the_command_line(case: Path, shared_data: Path) -> None:
    code, out, _ = localize(*base_args(case))
    assert code == 0
    result = json.loads(out)
    labels = json.loads((shared_data / "localization-dev" / "labels.json").read_text())
    truth = next(lab["root_causes"] for lab in labels if lab["file"] == CASE)
    key = lambda c: sorted(c.items())  # noqa: E731
    assert sorted(result["root_causes"], key=key) == sorted(truth, key=key)
    assert 0.9 <= result["explained_share"] <= 1.0
    details = result["details"]
    assert [d["combination"] for d in details] == result["root_causes"]
    assert details[0]["excess_failures"] >= details[1]["excess_failures"]  # by importance
    assert all(d["ratio"] > 5 * d["baseline_ratio"] for d in details)
    assert result["history"] == ["1585009200", "1585009260", "1585009320", "1585009380"]


def test_history_option_and_one_line_output(case: Path) -> None:
    code, out, _ = localize(*base_args(case), "--history", "2", "--indent", "0")
    assert code == 0
    assert out.count("\n") == 1
    assert json.loads(out)["history"] == ["1585009320", "1585009380"]


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


GOOD = "t,a,b,f,n\n1,x,y,1,10\n2,x,y,1,10\n3,x,y,9,10\n3,x,z,0,10\n"


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (GOOD, ["--dims", "a,c"], "missing column c"),
        (GOOD, ["--failures", "fails"], "missing column fails"),
        ("t,a,b,f,n\n1,x,y,1,10\n2,x,y,one,10\n", [], "row 2, column 'f': rule numeric_count"),
        ("t,a,b,f,n\n1,x,y,1,10\n2,x,y,1,ten\n", [], "row 2, column 'n': rule numeric_count"),
        (GOOD, ["--at", "7"], "--at 7 is not a bucket of column 't'"),
        (GOOD, ["--at", "1"], "no history before it"),
        (GOOD, ["--at", "yesterday"], "is not a value of column 't'"),
        ("t,a,b,f,n\n1,x,y,11,10\n3,x,y,1,10\n", [], "row 1, column 'f': rule failures_le_total"),
        ("t,a,b,f,n\n1,x,y,-1,10\n3,x,y,1,10\n", [], "rule non_negative"),
        ("t,a,b,f,n\n1,x,y,,10\n3,x,y,1,10\n", [], "row 1, column 'f': rule required"),
        ("", [], "the file is empty"),
        ("t,a,b,f,n\n", [], "the table has no rows"),
        (GOOD, ["--dims", " , "], "--dims needs at least one column name"),
        (GOOD, ["--dims", "a,a"], "named twice"),
        (GOOD, ["--dims", "a,f"], "cannot be both a dimension"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, content: str, args: list[str],
                                     message: str) -> None:
    table = write(tmp_path, "t.csv", content)
    opts = {"--time-col": "t", "--dims": "a,b", "--failures": "f", "--total": "n", "--at": "3"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    code, out, err = localize(str(table), *[x for kv in opts.items() for x in kv])
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_file_and_directory(tmp_path: Path) -> None:
    args = ["--time-col", "t", "--dims", "a", "--failures", "f", "--total", "n", "--at", "3"]
    code, _, err = localize(str(tmp_path / "nope.csv"), *args)
    assert code == 2 and "no such file" in err
    code, _, err = localize(str(tmp_path), *args)
    assert code == 2 and "directory" in err


def test_parquet_with_datetime_buckets(tmp_path: Path) -> None:
    frame = pl.DataFrame({
        "t": ["2026-11-11T10:00:00", "2026-11-11T10:01:00", "2026-11-11T10:02:00"] * 2,
        "a": ["x"] * 3 + ["y"] * 3,
        "f": [1, 1, 40, 1, 1, 1],
        "n": [100] * 6,
    }).with_columns(pl.col("t").str.to_datetime())
    path = tmp_path / "t.parquet"
    frame.write_parquet(path)
    code, out, _ = localize(str(path), "--time-col", "t", "--dims", "a", "--failures", "f",
                            "--total", "n", "--at", "2026-11-11T10:02:00")
    assert code == 0
    assert json.loads(out)["root_causes"] == [{"a": "x"}]


def _same(a: object, b: object) -> bool:
    """The same combinations, in any order."""
    def norm(x: object) -> list[str]:
        assert isinstance(x, list)
        return sorted(json.dumps(c, sort_keys=True) for c in x)
    return norm(a) == norm(b)


def _dev_labels(shared_data: Path) -> list[dict[str, object]]:
    path = shared_data / "localization-dev" / "labels.json"
    if not path.exists():
        pytest.fail(f"development labels missing: {path}")
    labels: list[dict[str, object]] = json.loads(path.read_text())
    return labels


def test_every_development_case_runs_from_the_command_line(shared_data: Path) -> None:
    """Every dev case (3 to 5 dimensions, text values, 5 to 27 buckets) gives clean JSON.

    Exactness against the labels is the benchmark's business; here: exit code 0,
    nothing on stderr, causes that exist in the table, figures that add up.
    """
    root = shared_data / "localization-dev"
    exact = 0
    labels = _dev_labels(shared_data)
    for lab in labels:
        table = root / str(lab["file"])
        header = table.read_text(encoding="utf-8").splitlines()[0].split(",")
        dims = [c for c in header if c not in ("min", "value", "cnt")]
        code, out, err = localize(str(table), "--time-col", "min", "--dims", ",".join(dims),
                                  "--failures", "value", "--total", "cnt",
                                  "--at", str(lab["at"]), "--indent", "0")
        assert code == 0, (lab["file"], err)
        assert err == ""
        result = json.loads(out)
        assert result["at"] == str(lab["at"]) and len(result["history"]) == 4
        for combo in result["root_causes"]:
            assert set(combo) <= set(dims)
        assert 0.0 <= result["explained_share"] <= 1.0
        assert [d["combination"] for d in result["details"]] == result["root_causes"]
        exact += _same(result["root_causes"], lab["root_causes"])
    assert exact >= len(labels) // 2  # a floor against a broken pipeline, not a benchmark

"""Scenario and traffic-model validation: every mistake names the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapshield.simulate import ScenarioError, load_scenario, load_traffic, scenario_names
from tapshield.timeutil import parse_duration

from .conftest import write_scenario


def test_library_has_at_least_twelve_valid_scenarios() -> None:
    names = scenario_names()
    assert len(names) >= 12
    assert {"demo-day", "quiet-week"} <= set(names)
    kinds: set[str] = set()
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
        assert sc.description and sc.why
        kinds |= {f.kind for f in sc.faults}
        if sc.festival is not None:
            kinds.add("festival")
    assert kinds >= {
        "interface",
        "network",
        "risk_control",
        "fraud_attack",
        "release",
        "maintenance",
        "small_merchant",
        "festival",
    }


def test_quiet_week_is_a_fault_free_week_with_the_festival_and_decoys() -> None:
    sc = load_scenario("quiet-week")
    assert sc.duration.days == 7
    assert sc.festival is not None
    assert all(f.kind in ("maintenance", "small_merchant") for f in sc.faults)


def test_load_by_path_equals_load_by_name() -> None:
    from importlib import resources

    path = Path(str(resources.files("tapshield.simulate").joinpath("scenarios/demo-day.yaml")))
    assert load_scenario(path).faults == load_scenario("demo-day").faults


def test_default_traffic_model_loads() -> None:
    t = load_traffic()
    assert len(t.regions) == 31
    assert set(t.channels) == {"nfc", "qr", "debit_card", "wallet"}


@pytest.mark.parametrize(
    "duration,seconds", [("45m", 2700), ("1h30m", 5400), ("2d", 172800), ("90s", 90), (120, 120)]
)
def test_durations(duration: object, seconds: float) -> None:
    assert parse_duration(duration).total_seconds() == seconds


def _error(tmp_path: Path, text: str) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    return str(info.value)


HEAD = 'name: bad\nstart: "2026-11-24T08:00:00+08:00"\nduration: 2h\n'


def test_out_of_range_value_names_line_and_field(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: interface\n    channel: nfc\n"
        "    start: +10m\n    duration: 5m\n    failure_rate: 1.5\n",
    )
    assert "bad.yaml line 9: faults[0].failure_rate" in msg
    assert "1.5" in msg


def test_unknown_field_is_an_error_not_ignored(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: network\n    region: CN-GD\n    start: +10m\n    duraton: 5m\n",
    )
    assert "line 8: faults[0].duraton: unknown field" in msg


def test_unknown_fault_kind(tmp_path: Path) -> None:
    msg = _error(tmp_path, HEAD + "faults:\n  - kind: meteor\n    start: +10m\n    duration: 5m\n")
    assert "faults[0]" in msg and "meteor" in msg


def test_names_must_exist_in_the_traffic_model(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: interface\n    channel: nfx\n"
        "    regions: [CN-ZZ]\n    start: +10m\n    duration: 5m\n",
    )
    assert "faults[0].channel: channel 'nfx' is not in the traffic model" in msg
    assert "faults[0].regions[0]: region 'CN-ZZ'" in msg


def test_not_a_technical_code(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: interface\n    channel: nfc\n"
        '    codes: {"51": 1}\n    start: +10m\n    duration: 5m\n',
    )
    assert "faults[0].codes" in msg and "'51' is not a technical code" in msg


def test_window_rules(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: network\n    region: CN-GD\n"
        "    start: +10m\n    duration: 5m\n    end: +20m\n",
    )
    assert "exactly one of end or duration" in msg
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: network\n    region: CN-GD\n    start: +5h\n    duration: 5m\n",
    )
    assert "outside the scenario's time window" in msg
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - kind: network\n    region: CN-GD\n"
        '    start: "2026-11-24T09:00:00"\n    duration: 5m\n',
    )
    assert "faults[0].start" in msg and "offset" in msg


def test_duplicate_ids_and_missing_fields(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        HEAD + "faults:\n  - {id: a, kind: network, region: CN-GD, "
        "start: +1m, duration: 1m}\n  - {id: a, kind: network, region: CN-SH, "
        "start: +1m, duration: 1m}\n",
    )
    assert "'a' is used twice" in msg
    msg = _error(tmp_path, "name: bad\nduration: 2h\n")
    assert "start: Field required" in msg


def test_broken_yaml_and_wrong_top_level(tmp_path: Path) -> None:
    assert "not valid YAML" in _error(tmp_path, "name: [unclosed\n")
    assert "mapping" in _error(tmp_path, "- just\n- a list\n")


def test_unknown_scenario_name_lists_the_library() -> None:
    with pytest.raises(ScenarioError, match="demo-day"):
        load_scenario("no-such-scenario")


def test_release_must_bring_a_new_version(tmp_path: Path, small_traffic: Path) -> None:
    with pytest.raises(ScenarioError, match="already deployed"):
        write_scenario(
            tmp_path,
            small_traffic,
            faults=[
                {
                    "kind": "release",
                    "target": "app",
                    "version": "8.1.0",
                    "start": "+1h",
                    "duration": "1h",
                }
            ],
        )


def test_traffic_model_errors_name_the_field(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(
        Path(
            str(
                __import__("importlib")
                .resources.files("tapshield.simulate")
                .joinpath("traffic.yaml")
            )
        )
        .read_text()
        .replace(
            "after_decline: {retry_same: 0.05, switch: 0.35, give_up: 0.60}",
            "after_decline: {retry_same: 0.05, switch: 0.35, give_up: 0.70}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match=r"behaviour\.after_decline: .*must be 1"):
        load_traffic(p)

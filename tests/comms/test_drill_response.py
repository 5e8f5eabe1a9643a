"""A drill's response end to end, on real local receivers: a night-time NFC outage whose
notices must wait for the morning, each customer told once and followed up once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapshield.app.drill import run_drill
from tapshield.comms.drill import respond_in_drill
from tapshield.simulate import load_scenario

SCENARIO = """\
name: night-nfc
description: The card network's NFC node in Guangdong fails late at night.
why: Notices must wait for 08:00; partners are told at once.
start: "2026-11-24T21:00:00+08:00"
duration: 3h
seed: 16
scale: 0.5
faults:
  - id: nfc-night
    kind: interface
    channel: nfc
    regions: [CN-GD]
    start: "+1h30m"
    duration: 40m
    ramp_up: 2m
    failure_rate: 0.8
"""


@pytest.mark.slow
def test_night_outage_notices_wait_for_the_morning(tmp_path: Path) -> None:
    path = tmp_path / "night-nfc.yaml"
    path.write_text(SCENARIO)
    r = run_drill(load_scenario(path), tmp_path / "out", failover=False,
                  respond=respond_in_drill)
    assert r.scorecard.summary()["detected"] == 1
    c = r.communication
    assert c is not None and c["drained"]
    assert c["customers_to_notify"] > 20
    assert c["notices_sent"] == c["followups_sent"] == c["customers_to_notify"]
    assert c["customers_exactly_one_notice_and_followup"] == c["customers_to_notify"]
    assert c["duplicates"] == 0 and c["messages_with_personal_data"] == 0
    assert c["unmatched_messages"] == 0 and c["quiet_hour_messages"] == 0
    # detected around 22:30: the first notice waits until 08:00, the partner does not
    assert c["first_notice_after_detection_s"] > 8 * 3600
    assert c["first_webhook_after_detection_s"] < 60
    assert c["webhooks_sent"] >= 2 and c["webhooks_rejected"] == 0

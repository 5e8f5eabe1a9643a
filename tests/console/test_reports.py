"""The reports in a real browser: the red outage on the first screen, notices folded,
headline figures that agree with the terminal summary, nothing pushed off the page.

The default suite checks the reports of the console's rehearsal (a nationwide NFC
outage among fraud notices); the slow suite checks the demo's own files (a full
day, 104 fraud notices), which take minutes to produce.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tapshield.report.present import yuan

VIEWPORT = {"width": 1280, "height": 800}


def _terminal_amount(stdout: str) -> str:
    m = re.search(r"amount not paid \(yuan\)\s+([0-9.]+)", stdout)
    assert m, stdout[-2000:]
    return m.group(1)


def check_reports(browser: Any, out: Path, terminal: str, artefacts: Path, name: str,
                  lang: str = "en") -> None:
    incidents = json.loads((out / "incidents.json").read_text())
    red = min(incidents, key=lambda i: (i["level"], i["start"]))
    assert red["level"] == 1
    outage = sum((Decimal(i["lost_amount"]) for i in incidents
                  if i["cause"] != "fraud_attack"), Decimal(0))
    assert Decimal(_terminal_amount(terminal)) == outage
    ctx = browser.new_context(viewport=VIEWPORT, bypass_csp=True, offline=True)
    try:
        page = ctx.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))

        page.goto((out / "report.html").as_uri())
        top = page.locator("section.top")
        assert red["id"] in top.inner_text()
        assert ("L1 红色" if lang == "zh" else "L1 red") in top.inner_text()
        assert page.locator("html").get_attribute("lang") == ("zh-CN" if lang == "zh" else "en")
        box = top.bounding_box()
        assert box is not None and box["y"] + 60 <= VIEWPORT["height"], box
        cards = page.locator(".cards").inner_text()
        # the headline amount is the outage's, with separators, and not the fraud added
        assert yuan(outage) in cards, cards
        assert page.locator("svg.chart").count() >= 3
        for d in page.locator("details").all():
            assert d.get_attribute("open") is None
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"]
        page.screenshot(path=str(artefacts / f"{name}-report.png"))

        page.goto((out / "impact.html").as_uri())
        first = page.locator("h2").first
        assert red["id"] in first.inner_text()
        box = first.bounding_box()
        assert box is not None and box["y"] + 30 <= VIEWPORT["height"], box
        assert re.search(r"\d{1,3}(,\d{3})+\.\d{2}", page.locator(".cards").first.inner_text())
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"]
        page.screenshot(path=str(artefacts / f"{name}-impact.png"))
        assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
    finally:
        ctx.close()


def test_the_rehearsal_reports_put_the_red_outage_first(browser: Any, outage_dir: Path,
                                                        artefacts: Path) -> None:
    check_reports(browser, outage_dir / "analysis", (outage_dir / "analyze.out").read_text(),
                  artefacts, "rehearsal", lang="zh")


def test_every_report_word_exists_in_both_languages() -> None:
    from importlib import resources

    from tapshield.report import i18n

    text = resources.files("tapshield.report").joinpath("templates/report.html.j2").read_text()
    used = set(re.findall(r"tr\('([a-z0-9_]+)'", text)) | {"red", "orange", "yellow", "blue"}
    assert used and used <= i18n.keys(), used - i18n.keys()
    for k in used:
        assert i18n.tr(k, "en", n=1, amount="1.00") and i18n.tr(k, "zh", n=1, amount="1.00")


@pytest.mark.slow
def test_the_demo_reports_put_the_red_outage_first(browser: Any, tmp_path: Path,
                                                   artefacts: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tapshield", "demo", "--out", "demo-out"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    notices = [i for i in json.loads((tmp_path / "demo-out" / "incidents.json").read_text())
               if i["level"] == 4]
    assert len(notices) >= 50  # the demo's many fraud notices are what used to bury it
    check_reports(browser, tmp_path / "demo-out", out.stdout, artefacts, "demo")

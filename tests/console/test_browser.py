"""The console in a real browser (Chromium via Playwright) on a live service.

Every audience page is opened on a service holding a simulated nationwide NFC
outage; the red incident must be the first thing on the page, with its chart
and numbers; a passkey made by a virtual authenticator (Chromium's DevTools
WebAuthn domain) signs an operator in, whose acknowledgement shows up through
the API; screenshots are saved as artefacts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import Console

VIEWPORT = {"width": 1280, "height": 800}
MONEY = re.compile(r"\d{1,3}(,\d{3})+\.\d{2}")
"""Yuan with thousands separators and two decimals (the outage is over 1,000 yuan)."""


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        yield ctx
    finally:
        ctx.close()


def sign_in_with_key(page: Any, console: Console, key: str) -> None:
    page.goto(console.url + "/console/now")
    assert "/console/login" in page.url  # nothing is shown before signing in
    page.fill("#key", key)
    page.click("form.keyform button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/now$"))


def first_screen(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    assert box["y"] + min(box["height"], 40) <= VIEWPORT["height"], (
        f"{selector} starts at y={box['y']}, below the first screen")
    return dict(box)


def test_every_page_puts_the_red_outage_first(context: Any, console: Console,
                                              artefacts: Path) -> None:
    page = context.new_page()
    sign_in_with_key(page, console, console.operator_key)

    # Now: the open red incident is the first row of the first section, on screen.
    first_row = page.locator("section.open-incidents tbody tr").first
    assert "L1 red" in first_row.inner_text() and console.red_id in first_row.inner_text()
    first_screen(page, "section.open-incidents tbody tr")
    assert page.locator("svg.chart").count() >= 2
    assert page.locator(".tile").count() == 31
    assert page.locator(".tile.h-down").count() == 31  # NFC is down nationwide
    assert re.search(r"\d+\.\d%", page.locator(".kpi").first.inner_text())
    page.screenshot(path=str(artefacts / "now.png"))

    # Incidents: the red one first; level-4 notices folded into one line per kind.
    page.click("nav >> text=Incidents")
    rows = page.locator("table.incidents").first.locator("tbody tr")
    assert console.red_id in rows.first.inner_text()
    first_screen(page, "table.incidents tbody tr")
    for group in page.locator("details.notice-group").all():
        assert group.get_attribute("open") is None  # folded until asked for
    page.screenshot(path=str(artefacts / "incidents.png"))

    # Incident: level, cause with confidence, scope, figures, chart with the span.
    rows.first.locator("a").click()
    page.wait_for_url(re.compile(rf".*/console/incidents/{console.red_id}$"))
    head = page.locator("section.inc-head").inner_text()
    assert "L1 red" in head and "interface" in head and "channel=nfc" in head
    first_screen(page, "section.inc-head")
    figures = page.locator("section.kpis").inner_text()
    assert MONEY.search(figures), figures
    assert page.locator("svg.chart").count() == 3
    assert page.locator("svg.chart rect title").count() >= 1  # the shaded incident
    assert page.locator("ul.evidence li").count() >= 3
    assert page.locator("ol.levels-list li").count() >= 2  # fired, then escalated
    page.screenshot(path=str(artefacts / "incident.png"))

    # Impact: borrowers (stressed first), regulatory classes, CSV export.
    page.click("nav >> text=Impact")
    assert page.locator("table.borrowers tbody tr").count() >= 1
    assert console.red_id in page.locator("table.reg tbody tr").first.inner_text()
    first_status = page.locator("table.borrowers tbody tr").first.get_attribute("class")
    assert first_status in ("st-operational_stress", "st-pre_existing_credit"), first_status
    page.select_option("select[name=label]", "operational")
    page.click(".filters button[type=submit]")
    labels = page.locator("table.borrowers tbody tr td:nth-child(4)").all_inner_texts()
    assert labels and all("operational" in x for x in labels)
    csv = page.request.get(console.url + "/console/impact.csv?label=operational")
    assert csv.ok and csv.text().splitlines()[0].startswith("borrower_id,region")
    assert len(csv.text().splitlines()) == len(labels) + 1
    page.screenshot(path=str(artefacts / "impact.png"))

    # Risk: decision rates and rules (the service's own decision log).
    page.click("nav >> text=Risk")
    assert page.locator("h2").first.inner_text().startswith("Decision rates")
    risk = page.locator("main").inner_text()
    assert "decline" in risk and "step_up" in risk and "large-amount" in risk
    page.screenshot(path=str(artefacts / "risk.png"))


def test_chinese_pages_follow_the_browser(browser: Any, console: Console,
                                          artefacts: Path) -> None:
    ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN",
                              extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    try:
        page = ctx.new_page()
        page.goto(console.url + "/console/login")
        assert page.locator("#passkey-login").inner_text() == "使用通行密钥登录"
        page.fill("#key", console.operator_key)
        page.click("form.keyform button[type=submit]")
        page.wait_for_url(re.compile(r".*/console/now$"))
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert "一级 红色" in page.locator("section.open-incidents tbody tr").first.inner_text()
        assert "广东" in page.locator(".tiles").inner_text()
        for path in ("incidents", f"incidents/{console.red_id}", "impact", "risk"):
            page.goto(f"{console.url}/console/{path}")
            assert page.locator("nav a[aria-current=page]").inner_text() in (
                "事件", "影响", "风控")
        page.goto(console.url + "/console/now")
        page.screenshot(path=str(artefacts / "now-zh.png"))
    finally:
        ctx.close()


def test_passkey_sign_in_and_an_acknowledgement_reach_the_api(
        context: Any, console: Console, artefacts: Path) -> None:
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})

    # Enrol: signed in with the API key, an operator may read but not act.
    sign_in_with_key(page, console, console.operator_key)
    page.goto(f"{console.url}/console/incidents/{console.red_id}")
    assert page.locator("form.actions").count() == 0
    assert "passkey" in page.locator("main").inner_text().lower()
    page.goto(console.url + "/console/passkeys")
    page.click("#passkey-register")
    expect(page.locator("#passkey-list li code")).to_have_count(1)

    # Sign out, then in with the passkey alone.
    page.click("header button.link")
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.click("#passkey-login")
    page.wait_for_url(re.compile(r".*/console/now$"))
    assert "passkey" in page.locator("header .who").inner_text()

    # Acknowledge in the console; the API shows who did it.
    page.goto(f"{console.url}/console/incidents/{console.red_id}")
    assert "not acknowledged" in page.locator("section.inc-head").inner_text()
    page.click("form.actions button[data-action=acknowledge]")
    expect(page.locator("section.inc-head")).to_contain_text("acknowledged: ")
    api = httpx.get(f"{console.url}/v1/incidents/{console.red_id}",
                    headers={"Authorization": f"Bearer {console.operator_key}"}).json()
    assert api["handling"]["acknowledged_at"] is not None
    assert "via console passkey" in api["handling"]["acknowledged_by"]
    assert api["actions"][0]["action"] == "acknowledge"

    # Live: an assignment made through the API appears without a reload.
    marker = page.locator("body").get_attribute("data-refreshed")
    r = httpx.post(f"{console.url}/v1/incidents/{console.red_id}/assign",
                   headers={"Authorization": f"Bearer {console.operator_key}"},
                   json={"assignee": "payments-oncall"})
    assert r.status_code == 200, r.text
    expect(page.locator("section.inc-head")).to_contain_text("payments-oncall",
                                                             timeout=20_000)
    assert page.locator("body").get_attribute("data-refreshed") != marker

    # The response desk's timeline (lifecycle moves, notices, partner updates) shows too.
    r = httpx.post(f"{console.url}/v1/respond/incidents/{console.red_id}/transition",
                   headers={"Authorization": f"Bearer {console.operator_key}"},
                   json={"to": "mitigating", "why": "routing NFC taps to QR"})
    assert r.status_code == 200, r.text
    page.reload()
    expect(page.locator("ol.response")).to_contain_text("routing NFC taps to QR")
    page.screenshot(path=str(artefacts / "incident-acknowledged.png"))


def test_roles_decide_what_each_person_sees_and_may_do(context: Any, console: Console) -> None:
    page = context.new_page()
    sign_in_with_key(page, console, console.credit_key)
    assert [a.inner_text() for a in page.locator("header nav a").all()] == [
        "Now", "Incidents", "Impact"]
    r = page.request.get(console.url + "/console/risk")
    assert r.status == 403
    r = page.request.post(f"{console.url}/console/incidents/{console.red_id}/acknowledge",
                          data={}, headers={"X-CSRF-Token": "x"})
    assert r.status == 403
    # A gateway key (a machine) has no console at all.
    page.goto(console.url + "/console/login")
    gateway = _gateway_key(console)
    page.fill("#key", gateway)
    page.click("form.keyform button[type=submit]")
    assert "no console access" in page.locator("p.error:not([hidden])").inner_text()


def _gateway_key(console: Console) -> str:
    from .conftest import _key

    return _key(console.workdir, "gateway", "gw")


def test_no_page_without_a_session(console: Console) -> None:
    for path in ("now", "incidents", f"incidents/{console.red_id}", "impact", "risk",
                 "impact.csv"):
        r = httpx.get(f"{console.url}/console/{path}", follow_redirects=False)
        assert r.status_code == 303 and "/console/login" in r.headers["location"], path
    assert httpx.get(console.url + "/console/stream").status_code == 401
    forged = httpx.get(console.url + "/console/now",
                       cookies={"tapshield_console": "eyJrIjoiYSJ9.AAAA"},
                       follow_redirects=False)
    assert forged.status_code == 303


def test_keyboard_and_phone(browser: Any, console: Console, artefacts: Path) -> None:
    # bypass_csp: the page forbids eval, which Playwright's evaluate needs here
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True,
                              locale="en-US")
    try:
        page = ctx.new_page()
        sign_in_with_key(page, console, console.operator_key)
        # the page itself never scrolls sideways on a phone (wide tables scroll inside)
        width = page.evaluate("() => document.scrollingElement.scrollWidth")
        assert width <= 390, width
        assert "L1 red" in page.locator("section.open-incidents").inner_text()
        page.screenshot(path=str(artefacts / "now-phone.png"), full_page=False)
        # keyboard: the first Tab reaches the skip link, which moves focus to the content
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip"
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main"
        # the red incident's link is reachable by Tab and opens with Enter
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.textContent") == console.red_id:
                break
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf".*/console/incidents/{console.red_id}$"))
    finally:
        ctx.close()

"""The report's incident cards in a real browser (skipped like tests/test_report_browser.py when
Debian's chromium or playwright is absent): score, factors and a timeline whose non-finding steps
show their raw records, with attacker-controlled subjects shown as text only."""

from __future__ import annotations

from datetime import timedelta

from delegatewatch.outputs import html
from tests.test_incidents import T0, access, entra, grant, run, send
from tests.test_report_browser import ARTIFACTS, Page, browser  # noqa: F401 - the browser fixture

SUBJECT = '<img src=x onerror="alert(1)">Wire transfer'


def test_incident_card_shows_score_factors_and_raw_steps(browser, tmp_path):  # noqa: F811
    result = run(tmp_path, [
        entra("Reset user password.", "mallory@contoso.com", "ceo@contoso.com", "288fc35b-236b-4b73-868a-11f9d367bb13",
              T0 - timedelta(minutes=3)),
        grant("288fc35b-236b-4b73-868a-11f9d367bb13", "eve@contoso.com", T0, actor="mallory@contoso.com"),
        access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(minutes=10)),
        send("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(minutes=30), subject=SUBJECT)])
    [inc] = result.incidents
    report = tmp_path / "incidents.html"
    html.write(result, report)
    p = Page(browser, report)
    try:
        page = p.page
        card = page.locator(f"#inc-{inc.id}")
        assert card.count() == 1
        assert f"risk {inc.score}/100" in card.locator("h3").inner_text()
        assert card.locator("ul.factors li").count() == len(inc.factors)
        steps = card.locator("ol.timeline > li")
        assert steps.count() == 4
        assert [s.strip().lower() for s in card.locator(".step-kind").all_text_contents()] == \
            ["precursor", "grant", "use", "use"]
        raw = card.locator("details.raw")
        assert raw.count() == 3  # the reset, the read and the send; the grant links to its finding
        for i in range(raw.count()):
            raw.nth(i).locator("summary").click()
        p.wait_until("[...document.querySelectorAll('.incident details.raw pre')].every(e => e.textContent.length > 0)")
        assert "Reset user password." in raw.nth(0).locator("pre").inner_text()
        assert SUBJECT in card.inner_text()  # shown as text …
        assert page.evaluate("document.querySelectorAll('img').length") == 0  # … never as markup
        assert p.dialogs == [] and p.errors == [] and p.requests == [p.url]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#incidents").screenshot(path=str(ARTIFACTS / "report-incidents.png"))
    finally:
        p.close()

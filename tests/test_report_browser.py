"""The HTML report in a real browser: Debian's Chromium, headless, driven by Playwright (no browser
download: ``executable_path`` is the system's chromium, installed by scripts/install-browser.sh).

Checks that the report runs without console errors and without any network request, that the
charts are drawn, that the filters change what is shown, that attacker-controlled strings run
nothing, and saves screenshots to out/test-artifacts/.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from delegatewatch.engine.hunt import hunt
from delegatewatch.outputs import html
from tests.conftest import DEMO, ROOT, compact
from tests.test_report import XSS_FOLDER, XSS_RULE, xss_records

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = ROOT / "out" / "test-artifacts"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is absent: run scripts/install-browser.sh (make setup does) to install Debian's "
                "chromium for the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page opened on a report file, recording console errors, dialogs and network requests."""

    def __init__(self, browser, path: Path):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": 1320, "height": 900})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready=charts], body[data-ready=error]", timeout=60_000)

    def wait_until(self, expression: str, timeout: float = 10.0) -> None:
        """Poll ``expression`` (page.wait_for_function evaluates a string, which the report's CSP
        forbids; page.evaluate is not affected)."""
        deadline = time.monotonic() + timeout
        while not self.page.evaluate(expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            self.page.wait_for_timeout(25)

    def visible_findings(self) -> int:
        return self.page.locator("#finding-list article.finding").count()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "demo.html"
    html.write(hunt([str(DEMO)]), path)
    return path


@pytest.fixture
def demo_page(browser, demo_report):
    page = Page(browser, demo_report)
    yield page
    page.close()


def test_demo_report_renders_without_errors_or_requests(demo_page):
    page = demo_page.page
    assert page.evaluate("document.body.dataset.ready") == "charts"
    assert demo_page.errors == []
    assert demo_page.requests == [demo_page.url], "the report loads nothing but itself"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.locator("#graph").screenshot(path=str(ARTIFACTS / "report-graph.png"))


def test_charts_are_drawn_with_marks(demo_page):
    page = demo_page.page
    bars = page.locator("#chart-severity svg .mark-rect path").count()
    assert bars >= 3  # critical, high, medium in the demo
    assert page.locator("#chart-timeline svg .mark-rect path").count() >= 3
    nodes = page.locator("#chart-graph svg g.mark-symbol path").count()
    edges = page.locator("#chart-graph svg g.mark-path path").count()
    assert nodes >= 10 and edges >= 8
    labels = page.locator("#chart-graph svg g.mark-text text").all_text_contents()
    assert "Default" in labels and "Anonymous" in labels
    assert "carries send-volume data" in page.locator("#volume").inner_text()


def test_filters_change_what_is_shown(demo_page, browser):
    page = demo_page.page
    total = page.evaluate("JSON.parse(document.getElementById('dw-data').textContent).findings.length")
    counts = page.evaluate("""(() => { const c = {}; for (const f of JSON.parse(
        document.getElementById('dw-data').textContent).findings) c[f.severity] = (c[f.severity] || 0) + 1; return c; })()""")
    assert demo_page.visible_findings() == total
    page.click("#f-severity .chip[data-severity=critical]")
    assert demo_page.visible_findings() == counts["critical"] < total
    assert page.locator("#f-status").get_attribute("data-matching") == str(counts["critical"])
    assert all(s == "critical" for s in page.locator("#finding-list article.finding").evaluate_all(
        "els => els.map(e => e.dataset.severity)"))
    page.click("#f-severity .chip[data-severity=high]")  # chips add up
    assert demo_page.visible_findings() == counts["critical"] + counts["high"]
    page.click("#f-clear")
    assert demo_page.visible_findings() == total
    page.select_option("#f-rule", "m365_mailbox_full_access_grant")
    assert 0 < demo_page.visible_findings() < total
    page.click("#f-clear")
    page.fill("#f-mailbox", "ceo@")
    demo_page.wait_until(f"document.getElementById('f-status').dataset.matching !== '{total}'")
    assert 0 < demo_page.visible_findings() < total
    page.click("#f-clear")
    page.fill("#f-actor", "priya")
    demo_page.wait_until("document.getElementById('f-status').dataset.matching === '2'")
    page.click("#f-clear")
    page.fill("#f-search", "c0ntoso")  # the look-alike external domain
    demo_page.wait_until("document.getElementById('f-status').dataset.matching === '1'")
    assert demo_page.visible_findings() == 1
    # the graph follows the filters
    demo_page.wait_until("document.querySelectorAll('#chart-graph svg g.mark-path path').length === 1")
    assert demo_page.errors == []


def test_raw_record_expands_to_pretty_json(demo_page):
    page = demo_page.page
    details = page.locator("#finding-list details.raw").first
    details.locator("summary").click()
    # the JSON is written when the details element's (asynchronous) toggle event arrives
    demo_page.wait_until("document.querySelector('#finding-list details.raw pre').textContent.length > 0")
    text = details.locator("pre").inner_text()
    assert text.startswith("{\n  ") and '"Operation"' in text


def test_attacker_strings_run_nothing(browser, tmp_path):
    path = tmp_path / "ual.jsonl"
    path.write_text("".join(compact(r) + "\n" for r in xss_records()), encoding="utf-8")
    report = tmp_path / "xss.html"
    html.write(hunt([str(path)]), report, title="XSS check")
    p = Page(browser, report)
    try:
        page = p.page
        for d in page.locator("details").all():  # open every raw record and runbook
            d.locator("summary").first.click()
        p.wait_until("[...document.querySelectorAll('details.raw pre')].every(e => e.textContent.length > 0)")
        assert page.title() == "XSS check"
        assert p.dialogs == [] and p.errors == []
        assert p.requests == [p.url]
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        body = page.locator("body").inner_text()
        assert XSS_FOLDER in body and XSS_RULE in body  # shown, as text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#findings").screenshot(path=str(ARTIFACTS / "report-xss.png"))
    finally:
        p.close()


def test_many_findings_paginate(browser, tmp_path):
    result = hunt([str(DEMO)])
    base = result.findings
    result.findings = [dataclasses.replace(base[i % len(base)], id=f"{i:016x}") for i in range(130)]
    report = tmp_path / "many.html"
    html.write(result, report)
    p = Page(browser, report)
    try:
        assert p.visible_findings() == 50
        p.page.click("#finding-pager button.next")
        p.page.click("#finding-pager button.next")
        assert p.visible_findings() == 30
        assert p.page.locator("#finding-list article.finding").last.get_attribute("data-finding-id") == f"{129:016x}"
        assert p.errors == []
    finally:
        p.close()

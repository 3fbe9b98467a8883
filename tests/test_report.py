"""The HTML report without a browser: content, escaping of attacker-controlled text, no external
URLs, the data block and CSP, and the incident grouping (a pure function)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from delegatewatch.engine.hunt import hunt
from delegatewatch.outputs import html
from tests.conftest import DEMO, compact, ual

XSS_FOLDER = "<img src=x onerror=alert(1)>"
XSS_RULE = "<script>document.title='pwned'</script>"

#: URLs that may appear inside the vendored chart libraries: XML namespaces, schema identifiers and
#: links in messages. None is ever requested (the browser test checks that no request leaves the
#: file, and the page's CSP forbids any); a new one in a library update must be looked at.
LIBRARY_URLS = {
    "http://www.w3.org/2000/svg", "http://www.w3.org/2000/xmlns/", "http://www.w3.org/1999/xlink",
    "https://vega.github.io/schema/vega/v6.json", "https://github.com/vega/vega-lite/issues/2415",
    "https://vega.github.io/editor/", "https://github.com/Starcounter-Jack/JSON-Patch", "https://", "http://",
}


def xss_records() -> list[dict]:
    folder = {"Id": "5e0f0000-0000-0000-0000-00000000f01d", "CreationTime": "2024-03-01T10:00:00",
              "RecordType": 2, "Operation": "ModifyFolderPermissions", "ResultStatus": "Succeeded",
              "UserType": 0, "UserId": "victim@contoso.com", "LogonType": 0,
              "MailboxOwnerUPN": "victim@contoso.com",
              "Item": {"Id": "LgAAAA", "ParentFolder": {"Id": "LgAAAA", "MemberRights": "ReadAny, Visible",
                                                       "MemberSid": "S-1-1-0", "MemberUpn": "Everyone",
                                                       "Name": XSS_FOLDER, "Path": "\\" + XSS_FOLDER}}}
    rule = ual("New-InboxRule", "5e0f0000-0000-0000-0000-0000000041e5", Name=XSS_RULE, DeleteMessage="True",
               MarkAsRead="True")
    rule["UserId"] = "victim@contoso.com"
    rule["CreationTime"] = "2024-03-01T10:05:00"
    return [folder, rule]


@pytest.fixture(scope="module")
def demo_result():
    return hunt([str(DEMO)])


@pytest.fixture(scope="module")
def demo_html(demo_result) -> str:
    return html.render(demo_result)


@pytest.fixture(scope="module")
def xss_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("xss") / "ual.jsonl"
    path.write_text("".join(compact(r) + "\n" for r in xss_records()), encoding="utf-8")
    result = hunt([str(path)])
    assert {f.rule for f in result.findings} >= {"m365_folder_default_anonymous_audit", "m365_inbox_rule_hiding"}
    return result


def data_block(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="dw-data">(.*?)</script>', page, re.DOTALL)
    assert m, "no data block"
    return json.loads(m.group(1))


class _Scanner(HTMLParser):
    """Collects attributes and text of the report's own markup (script bodies excluded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def scan(page: str) -> _Scanner:
    s = _Scanner()
    s.feed(page)
    s.close()
    return s


# -- content --------------------------------------------------------------------------------
def test_demo_report_contains_every_finding(demo_result, demo_html):
    assert demo_result.findings
    data = data_block(demo_html)
    assert [f["id"] for f in data["findings"]] == [f.id for f in demo_result.findings]
    for f in demo_result.findings:
        assert f.id in demo_html
        for e in f.evidence:
            assert e.record_id in data["records"], "the raw record of every piece of evidence is embedded"
    assert {inc_id for f in data["findings"] for inc_id in [f["incident"]]} == {i["id"] for i in data["incidents"]}


def test_summary_shows_files_records_and_severities(demo_result, demo_html):
    s = demo_result.stats
    for path, _ in s.files_read:
        assert path in demo_html
    for path, reason in s.files_skipped:
        assert path in demo_html
        assert html._environment().from_string("{{ r }}").render(r=reason) in demo_html
    assert f">{s.records_seen:,}<" in demo_html and f">{s.duplicates:,}<" in demo_html
    for sev, n in demo_result.by_severity.items():
        assert re.search(rf'sev-{sev}">{sev}</span></th><td>{n}</td>', demo_html)


def test_skipped_records_by_reason_are_listed(tmp_path):
    path = tmp_path / "broken.jsonl"
    good = ual(rid="00000000-0000-0000-0000-0000000000aa")
    path.write_text(compact(good) + "\n{not json at all\n", encoding="utf-8")
    result = hunt([str(path)], full_parse=True)
    assert result.stats.skipped >= 1
    page = html.render(result)
    assert "Skipped records by reason" in page
    for reason in result.stats.skip_reasons:
        assert html._environment().from_string("{{ r }}").render(r=reason) in page


def test_empty_hunt_renders(tmp_path):
    result = hunt([str(tmp_path)])
    page = html.render(result)
    data = data_block(page)
    assert data["findings"] == [] and data["incidents"] == []


def test_write_to_path_text_and_binary_streams(demo_result, tmp_path):
    target = tmp_path / "sub" / "report.html"
    html.write(demo_result, target)
    text_out, bin_out = io.StringIO(), io.BytesIO()
    html.write(demo_result, text_out)
    html.write(demo_result, bin_out)
    for page in (target.read_text(encoding="utf-8"), text_out.getvalue(), bin_out.getvalue().decode("utf-8")):
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


# -- security -------------------------------------------------------------------------------
def test_attacker_strings_appear_only_escaped(xss_result):
    page = html.render(xss_result)
    assert XSS_FOLDER not in page and XSS_RULE not in page
    own = re.sub(r"<script>.*?</script>", "", page, flags=re.DOTALL)  # minus the vendored libraries
    assert "<img" not in own.lower() and "onerror" not in own.replace("onerror=alert(1)\\u003e", "")
    outside_data = re.sub(r'<script type="application/json" id="dw-data">.*?</script>', "", page, flags=re.DOTALL)
    assert "pwned" not in outside_data and "onerror=alert" not in outside_data  # only in the data block
    data = data_block(page)
    texts = json.dumps(data, ensure_ascii=False)
    assert XSS_FOLDER in texts and "document.title=" in texts  # the data is there, for textContent
    # in the data block, the markup characters are \u-escaped
    raw_block = re.search(r'id="dw-data">(.*?)</script>', page, re.DOTALL).group(1)
    assert "<" not in raw_block and ">" not in raw_block and "&" not in raw_block
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in raw_block
    # no element but the report's own: one data block, four scripts, no img/iframe/object
    s = scan(page)
    assert "img" not in s.tags and "iframe" not in s.tags and "object" not in s.tags
    assert [a.get("type") for a, _ in s.scripts] == ["application/json", None, None, None, None]
    assert not [a for a in s.attrs if a[1].lower().startswith("on")], "no inline event handlers"


def test_file_names_and_skip_reasons_are_escaped(tmp_path):
    evil = tmp_path / "<svg onload=alert(1)>.txt"
    evil.write_text("not a log\n")
    result = hunt([str(tmp_path)])
    assert result.stats.files_skipped
    page = html.render(result)
    assert "<svg onload" not in page and "&lt;svg onload=alert(1)&gt;" in page


def test_script_json_escapes_markup_and_line_separators():
    text = html.script_json({"a": "</script><!-- & \u2028\u2029 é"})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"a": "</script><!-- & \u2028\u2029 é"}


def test_no_external_urls(demo_html, xss_result):
    for page in (demo_html, html.render(xss_result)):
        s = scan(page)
        for tag, name, value in s.attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "formaction", "xlink:href"):
                assert value is not None and value.startswith(("#", "data:")), (tag, name, value)
        # the report's own markup, styles, data and script carry no URL at all
        own = re.sub(r"<script>.*?</script>", "", page, flags=re.DOTALL)
        assert not re.search(r"(?i)\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/", own.replace("&#34;", '"'))
        assert "@import" not in page and "url(" not in own
        scripts = [text for attrs, text in s.scripts if attrs.get("type") is None]
        assert not re.search(r"https?://", scripts[-1]), "report.js names no URL"
        library_urls = set(re.findall(r"https?://[A-Za-z0-9._/~%-]*", "".join(scripts[:-1])))
        assert library_urls <= LIBRARY_URLS, library_urls - LIBRARY_URLS


def test_content_security_policy_allows_only_the_inline_scripts(demo_html):
    s = scan(demo_html)
    csp = next(v for t, k, v in s.attrs if t == "meta" and k == "content" and v and "script-src" in v)
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["connect-src"] == "'none'"
    assert "unsafe-inline" not in directives["script-src"] and "unsafe-eval" not in directives["script-src"]
    hashes = set(directives["script-src"].split())
    for attrs, text in s.scripts:
        if attrs.get("type") is None:
            digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in hashes


def test_vendored_libraries_match_their_recorded_versions():
    static = Path(html.__file__).parent / "static"
    versions = json.loads((static / "VERSIONS.json").read_text())
    assert set(versions) == set(html.LIBRARIES)
    for name, v in versions.items():
        assert hashlib.sha256((static / v["file"]).read_bytes()).hexdigest() == v["sha256"], name
        assert (static / v["license_file"]).is_file()


# -- incidents (findings/incidents.py; the report shows them) --------------------------------
def test_report_shows_grant_use_incidents_with_their_steps(corpus):
    sample = corpus / "blueteam0ps-det-eng-samples" / "t1098.002_user-reset_mailbox_full_access.json"
    result = hunt([str(sample)])
    data = data_block(html.render(result))
    [inc] = data["incidents"]
    assert inc["id"] == result.incidents[0].id and inc["score"] == result.incidents[0].score
    assert [s["kind"] for s in inc["steps"]] == ["precursor", "grant"]
    reset, grant = inc["steps"]
    assert "finding" not in reset and reset["records"] == ["4d7e6990-ec4f-4cd5-9d76-a56b0e327e53"]
    assert grant == {"kind": "grant", "finding": result.findings[0].id}  # the page has the finding itself
    assert reset["records"][0] in data["records"], "a precursor's raw record is embedded like a finding's"
    assert {f["incident"] for f in data["findings"]} == {inc["id"]}


def test_volume_hook_feeds_charts(demo_result):
    f = demo_result.findings[0]
    f.anomaly = {"account": "ceo@contoso.com", "series": [{"time": "2024-10-14T00:00:00Z", "sent": 400, "expected": 20}]}
    try:
        data = html.report_data(demo_result)
    finally:
        del f.anomaly
    assert data["volume"] == [{"finding": f.id, "account": "ceo@contoso.com",
                               "series": [{"time": "2024-10-14T00:00:00Z", "sent": 400, "expected": 20}]}]
    assert html.report_data(demo_result)["volume"] == []

#!/usr/bin/env python3
"""Benchmark the HTML report with many findings: render it, open it in headless Chromium, filter.

Builds N synthetic findings (default 10,000) that look like a large tenant's: the real rule set,
hundreds of mailboxes, a few dozen actors, grantees of every kind (users, Default/Everyone,
Anonymous, guests, external addresses, apps), over ~90 days, each with its raw UAL record. Then:

  1. renders the report (Python) and notes the file size;
  2. opens it in Debian's /usr/bin/chromium through Playwright (a fresh page each repeat) and reads
     the page's own clock: navigation start → DOMContentLoaded, → findings list drawn
     (``performance.mark('dw-list')``), → every chart drawn (``dw-charts``);
  3. times filters inside the page: a severity chip click (list, incidents and counts are redrawn
     synchronously) and the graph redraw that follows it; a search typed into the box.

Prints a Markdown table of medians over ``--repeat`` runs. Usage:

    .venv/bin/python bench/report_bench.py [--findings 10000] [--repeat 3] [--keep out/bench-report.html]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from delegatewatch.detections.rules import load_rules
from delegatewatch.engine.hunt import HuntResult
from delegatewatch.findings.model import SEVERITIES, Evidence, Finding
from delegatewatch.outputs import html
from delegatewatch.records import ReadStats

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]

#: rule → (operation, rights, grantee kinds it produces, severity)
SHAPES = {
    "m365_mailbox_full_access_grant": ("Add-MailboxPermission", ["FullAccess"], ["user", "guest", "external"], "high"),
    "m365_send_as_grant": ("Add-RecipientPermission", ["SendAs"], ["user", "external"], "high"),
    "m365_send_on_behalf_grant": ("Set-Mailbox", ["SendOnBehalf"], ["user", "external"], "medium"),
    "m365_folder_default_anonymous_audit": ("ModifyFolderPermissions", ["FolderVisible", "ReadItems"], ["default", "anonymous"], "high"),
    "m365_folder_default_anonymous_cmdlet": ("Add-MailboxFolderPermission", ["FolderVisible"], ["default", "anonymous"], "critical"),
    "m365_folder_read_grant": ("Add-MailboxFolderPermission", ["FolderVisible", "ReadItems"], ["user", "guest"], "medium"),
    "m365_application_impersonation": ("New-ManagementRoleAssignment", ["ApplicationImpersonation"], ["user"], "critical"),
    "m365_app_mail_permission": ("Add delegated permission grant.", ["Mail.ReadWrite"], ["user"], "high"),
    "m365_inbox_rule_hiding": ("New-InboxRule", [], [], "medium"),
    "m365_mail_forwarding": ("Set-Mailbox", [], [], "high"),
    "m365_mailbox_audit_bypass": ("Set-MailboxAuditBypassAssociation", ["AuditBypass"], ["user"], "critical"),
}
FOLDERS = ["\\", "\\Inbox", "\\Calendar", "\\Sent Items", "\\Inbox\\Finance", "\\Contacts"]


def synthetic(n: int, seed: int = 7) -> HuntResult:
    rng = random.Random(seed)
    rules = [r for r in load_rules() if r.name in SHAPES] or load_rules()
    by_name = {r.name: r for r in rules}
    names = [r.name for r in rules]
    weights = [6 if SHAPES.get(x, ("", [], [], ""))[3] in ("medium", "high") else 2 for x in names]
    mailboxes = [f"user{i:04d}@contoso.com" for i in range(900)] + ["ceo@contoso.com", "cfo@contoso.com",
                                                                     "legal@contoso.com", "treasury@contoso.com"]
    actors = [f"adm-{i:02d}@contoso.com" for i in range(12)] + [f"user{i:04d}@contoso.com" for i in range(0, 900, 25)]
    guests = [f"partner{i}_fabrikam.com#EXT#@contoso.onmicrosoft.com" for i in range(20)]
    external = [f"consultant{i}@gmail.com" for i in range(30)] + ["billing@c0ntoso.com"]
    start = datetime(2024, 7, 1, tzinfo=UTC)
    findings, records = [], {}
    for i in range(n):
        rule = by_name[rng.choices(names, weights)[0]]
        op, rights, kinds, level = SHAPES.get(rule.name, ("Unknown", [], [], rule.severity))
        kind = rng.choice(kinds) if kinds else None
        grantee = {"user": rng.choice(mailboxes), "guest": rng.choice(guests), "external": rng.choice(external),
                   "default": "Default", "anonymous": "Anonymous", None: None}[kind]
        mailbox = rng.choice(mailboxes[:300]) if rng.random() < 0.8 else rng.choice(mailboxes)
        actor = rng.choice(actors)
        t = (start + timedelta(seconds=rng.randrange(90 * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")
        severity = level
        reasons = []
        if kind in ("guest", "external") and rng.random() < 0.7:
            severity, reasons = "critical", [f"grantee is {'a guest' if kind == 'guest' else 'external'}"]
        folder = rng.choice(FOLDERS) if "folder" in rule.name else None
        rid = str(uuid.UUID(int=rng.getrandbits(128)))
        record = {"CreationTime": t[:-1], "Id": rid, "Operation": op, "RecordType": 1, "ResultStatus": "True",
                  "UserId": actor, "UserType": 2, "Workload": "Exchange", "ObjectId": mailbox,
                  "ClientIP": f"203.0.113.{rng.randrange(1, 255)}",
                  "OrganizationId": "7c1aec86-7bc7-44d0-a01c-72c2f196f29b",
                  "Parameters": [{"Name": "Identity", "Value": mailbox + (":" + folder if folder else "")},
                                 {"Name": "User", "Value": grantee or ""},
                                 {"Name": "AccessRights", "Value": ",".join(rights)}]}
        records[rid] = record
        source = f"evidence/ual-{i // 2500:02d}.jsonl"
        findings.append(Finding(
            id=f"{rng.getrandbits(64):016x}", rule=rule.name, rule_id=rule.id, title=rule.title,
            severity=severity, time=t, attack=list(rule.attack), actor=actor, mailbox=mailbox, grantee=grantee,
            rights=rights, summary=f"{actor} gave {grantee or '-'} {', '.join(rights) or op} on {mailbox} ({op})",
            evidence=[Evidence(source, rid, t, line=(i % 2500) * 7 + 1)], operation=op, folder=folder,
            grantee_kind=kind, session_id=str(uuid.UUID(int=rng.getrandbits(128))), client_ip=record["ClientIP"],
            reasons=reasons, runbook=rule.runbook))
    findings.sort(key=lambda f: (f.time or "", f.rule, f.id))
    stats = ReadStats(files_read=[(f"evidence/ual-{k:02d}.jsonl", "ndjson") for k in range(n // 2500 + 1)],
                      records_seen=n * 40, records_parsed=n * 3)
    result = HuntResult(findings, stats, rules, candidates=n * 3, records=records)
    for f in findings:
        result.by_severity[f.severity] = result.by_severity.get(f.severity, 0) + 1
    return result


def measure(path: Path, repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {k: [] for k in ("dcl", "list", "charts", "chip", "graph", "search")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeat):
            ctx = browser.new_context(viewport={"width": 1320, "height": 900})
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
            page.goto(path.resolve().as_uri(), timeout=120_000)
            page.wait_for_selector("body[data-ready=charts], body[data-ready=error]", timeout=120_000)
            if errors or page.evaluate("document.body.dataset.ready") != "charts":
                sys.exit(f"the report failed in the browser: {errors[:3]}")
            t = page.evaluate("""(() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const mark = n => performance.getEntriesByName(n)[0].startTime;
                return {dcl: nav.domContentLoadedEventEnd, list: mark('dw-list'), charts: mark('dw-charts')};
            })()""")
            for k in ("dcl", "list", "charts"):
                out[k].append(t[k])
            chip = page.evaluate("""(() => {
                const t0 = performance.now();
                document.querySelector('#f-severity .chip[data-severity=critical]').click();
                return performance.now() - t0;
            })()""")
            out["chip"].append(chip)
            shown = page.locator("#finding-list article.finding").count()
            assert shown > 0, "the filter showed nothing"
            # a rule filter: list redrawn at once, the graph 150 ms after the last change (debounced)
            page.evaluate("document.querySelector('#f-severity .chip[data-severity=critical]').click()")
            graph = page.evaluate("""new Promise(resolve => {
                const target = document.getElementById('chart-graph');
                const before = target.dataset.draws;
                const obs = new MutationObserver(() => {
                    if (target.dataset.draws !== before) { obs.disconnect(); resolve(performance.now() - t0); }
                });
                obs.observe(target, {attributes: true});
                const select = document.getElementById('f-rule');
                select.value = 'm365_send_as_grant';
                const t0 = performance.now();
                select.dispatchEvent(new Event('change'));
            })""")
            out["graph"].append(graph)
            page.evaluate("document.getElementById('f-clear').click()")
            search = page.evaluate("""new Promise(resolve => {
                const status = document.getElementById('f-status');
                const box = document.getElementById('f-search');
                const obs = new MutationObserver(() => { obs.disconnect(); resolve(performance.now() - t0); });
                obs.observe(status, {childList: true, characterData: true, subtree: true});
                const t0 = performance.now();
                box.value = 'user0042';
                box.dispatchEvent(new Event('input'));
            })""")
            out["search"].append(search)
            ctx.close()
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="write the report here instead of a temporary file")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"{CHROMIUM} is absent: run scripts/install-browser.sh")
    result = synthetic(args.findings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "report.html"
        t0 = time.perf_counter()
        html.write(result, path)
        render_ms = (time.perf_counter() - t0) * 1000
        size = path.stat().st_size
        times = measure(path, args.repeat)
    med = {k: statistics.median(v) for k, v in times.items()}
    sev = ", ".join(f"{result.by_severity.get(s, 0)} {s}" for s in reversed(SEVERITIES))
    print(f"### HTML report, {args.findings:,} synthetic findings ({sev})\n")
    print(f"Chromium at {CHROMIUM}, headless; {platform.machine()}, {os.cpu_count()} CPUs; "
          f"medians of {args.repeat} page loads.\n")
    print("| step | time |")
    print("|---|---:|")
    print(f"| render report in Python (`html.write`) | {render_ms:,.0f} ms |")
    print(f"| report file size | {size / 1e6:,.1f} MB |")
    print(f"| navigation → DOMContentLoaded | {med['dcl']:,.0f} ms |")
    print(f"| navigation → findings list drawn | {med['list']:,.0f} ms |")
    print(f"| navigation → all charts drawn (incl. graph) | {med['charts']:,.0f} ms |")
    print(f"| severity filter click → list, incidents, counts redrawn | {med['chip']:,.1f} ms |")
    print(f"| rule filter → graph redrawn (incl. 150 ms debounce) | {med['graph']:,.0f} ms |")
    print(f"| search typed → list redrawn (incl. 120 ms debounce) | {med['search']:,.0f} ms |")


if __name__ == "__main__":
    main()

"""The hunt pipeline: parallel byte ranges give exactly the single-process result; the rule cache."""

from __future__ import annotations

import json

import pytest

from delegatewatch.detections import rules as rules_mod
from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.sources import split_points
from tests.conftest import compact, noise, ual


@pytest.fixture
def big_file(tmp_path):
    """~2 MB of NDJSON with grants everywhere, duplicates across the file and bad lines."""
    lines = []
    for i in range(6000):
        lines.append(compact(noise(i)))
        if i % 97 == 0:
            lines.append(compact(ual(rid=f"a0000000-0000-0000-0000-{i:012d}", Identity=f"m{i}@contoso.com",
                                     User="eve@contoso.com", AccessRights="FullAccess")))
        if i % 500 == 0:
            lines.append('{"Operation":"Add-MailboxPermission","AccessRights":"FullAccess","Id":"broken')
        if i % 1000 == 999:
            lines.append(compact(ual(rid="a0000000-0000-0000-0000-000000000097", Identity="m97@contoso.com",
                                     User="eve@contoso.com", AccessRights="FullAccess")))  # a repeat
    p = tmp_path / "big.ndjson"
    p.write_text("\n".join(lines) + "\n")
    return p


def _run(path, jobs, monkeypatch):
    monkeypatch.setattr(hunt_mod, "SPLIT_MIN", 1 << 16)
    monkeypatch.setattr(hunt_mod, "PARALLEL_MIN", 1 << 16)
    return hunt_mod.hunt([str(path)], jobs=jobs)


def test_split_points_cover_the_file_on_line_boundaries(big_file):
    data = big_file.read_bytes()
    ranges = split_points(str(big_file), 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(data[s - 1 : s] == b"\n" for s, _ in ranges[1:])


def test_parallel_hunt_equals_single_process(big_file, monkeypatch):
    one = _run(big_file, 1, monkeypatch)
    many = _run(big_file, 3, monkeypatch)
    assert len(hunt_mod.plan([str(big_file)], 3, hunt_mod.ReadStats())) > 1  # it really was split
    as_json = lambda r: [json.dumps(f.to_dict(), sort_keys=True) for f in r.findings]  # noqa: E731
    assert as_json(one) == as_json(many)
    for attr in ("records_seen", "records_parsed", "duplicates", "skipped"):
        assert getattr(one.stats, attr) == getattr(many.stats, attr), attr
    assert [str(i) for i in one.stats.issues] == [str(i) for i in many.stats.issues]
    assert one.stats.duplicates == 6 and one.stats.skipped == 12
    # Line numbers point at the right lines of the file.
    lines = big_file.read_text().splitlines()
    for f in many.findings:
        assert f.evidence[0].record_id in lines[f.evidence[0].line - 1]
    for issue in many.stats.issues:
        assert lines[issue.line - 1].endswith('"broken')


def test_compiled_rules_are_cached_and_recompiled_on_change(tmp_path, monkeypatch):
    monkeypatch.setenv("DELEGATEWATCH_CACHE", str(tmp_path / "cache"))
    src = rules_mod.builtin_rules_dir() / "m365_send_as_grant.yml"
    rule_file = tmp_path / "rules" / "r.yml"
    rule_file.parent.mkdir()
    rule_file.write_text(src.read_text())
    calls = []
    real = rules_mod.compile_rule
    monkeypatch.setattr(rules_mod, "compile_rule", lambda *a: calls.append(a) or real(*a))
    first = rules_mod.load_rule(rule_file)
    second = rules_mod.load_rule(rule_file)
    assert len(calls) == 1 and first == second
    rule_file.write_text(src.read_text().replace("level: high", "level: low"))
    third = rules_mod.load_rule(rule_file)
    assert len(calls) == 2 and third.severity == "low"

"""[allow]: expected delegator→delegate pairs, actors and grantees (ATT&CK DET0373 tunables)."""

from __future__ import annotations

import pytest

from delegatewatch import config
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.principals import Directory
from tests.conftest import DEMO

CFO_GRANT = "54404c32-a76f-4b18-999d-08dc1369fb20"  # FullAccess on dana.whitfield (CFO) to mark.ross


def _hunt(tmp_path, toml: str):
    p = tmp_path / "dw.toml"
    p.write_text(toml)
    before = config.current()
    config.use(config.load(p))
    try:
        return hunt([str(DEMO)], directory=Directory.load(str(DEMO / "directory.csv")),
                    exclude=[str(DEMO / "directory.csv")])
    finally:
        config.use(before)


def _by_record(result):
    return {f.evidence[0].record_id: f for f in result.findings}


def test_an_expected_pair_is_kept_but_informational(tmp_path):
    plain = _by_record(_hunt(tmp_path, ""))
    allowed = _by_record(_hunt(tmp_path, '[allow]\npairs = [["dana.whitfield@*", "mark.ross@contoso.com"]]\n'))
    assert plain[CFO_GRANT].severity in ("high", "critical")
    f = allowed[CFO_GRANT]
    assert f.severity == "informational" and any("allow-listed pair" in r for r in f.reasons)
    # only that pair: every other finding keeps its severity
    assert {k: v.severity for k, v in allowed.items() if k != CFO_GRANT} == \
           {k: v.severity for k, v in plain.items() if k != CFO_GRANT}


def test_pairs_match_raw_guid_values_too(tmp_path):
    allowed = _by_record(_hunt(tmp_path, '[allow]\npairs = [["6305e988-e051-4b7e-ba06-1c2fb260a3c7", '
                                         '"6c031de9-957a-4a54-8a4c-d6ee00deecc3"]]\n'))
    assert allowed[CFO_GRANT].severity == "informational"


def test_drop_mode_and_actor_allow_list(tmp_path):
    result = _hunt(tmp_path, '[allow]\nactors = ["adm-tvance@contoso.com"]\nmode = "drop"\n')
    assert result.findings and all(f.actor != "adm-tvance@contoso.com" for f in result.findings)


@pytest.mark.parametrize("toml,message", [
    ('[allow]\nmode = "hide"\n', "mode"),
    ('[allow]\npairs = [["only-one"]]\n', "pairs"),
    ('[allow]\nfoo = 1\n', "unknown setting"),
])
def test_bad_allow_lists_are_refused(tmp_path, toml, message):
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(config.ConfigError, match=message):
        config.load(p)

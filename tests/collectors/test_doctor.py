"""``delegatewatch doctor`` against local fakes: Google (fake_google) and M365 (fake_o365, HTTPS + trustme)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import fake_google as fg  # noqa: E402

from delegatewatch.collectors.doctor import jwt_claims  # noqa: E402
from delegatewatch.collectors.doctor_cli import doctor_command  # noqa: E402

CLIENT_ID = "113057194847293861740"
SECRET = "Sup3r~Secret.Value-For_Tests_only_9f8e7d"


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(doctor_command, list(args), env=env)


def by_name(doc: dict) -> dict:
    return {(c["area"], c["name"]): c for c in doc["checks"]}


# -------------------------------------------------------------------------------------------- Google

def google_args(fake, tmp_path, *extra: str) -> list[str]:
    return ["--credentials", str(tmp_path / "sa.json"), "--subject", fake.admin, "--reports-url", fake.base,
            "--directory-url", fake.base, "--gmail-url", fake.base, *extra]


def start_google(tmp_path, **kw):
    fake = fg.FakeGoogle(users=[{"primaryEmail": "user00@example.com"}],
                         delegates={"admin@example.com": [{"delegateEmail": "x@example.com",
                                                           "verificationStatus": "accepted"}]}, **kw)
    ctx = fg.running(fake)
    ctx.__enter__()
    fg.write_service_account(tmp_path / "sa.json", fake.token_uri, client_id=CLIENT_ID)
    return fake, ctx


def test_google_all_ok(tmp_path):
    fake, ctx = start_google(tmp_path)
    try:
        res = run(*google_args(fake, tmp_path, "--format", "json"))
    finally:
        ctx.__exit__(None, None, None)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["ok"] is True
    checks = by_name(doc)
    assert all(c["status"] == "ok" for c in doc["checks"]), doc
    for app in ("admin", "user_accounts", "token", "gmail"):
        assert checks[("google", f"Reports API: {app}")]["status"] == "ok"
    assert "1 delegate" in checks[("google", "Gmail API: delegates.list")]["detail"]
    # each scope was asked for separately, Gmail with the user as subject
    assert {(t["sub"], t["scope"]) for t in fake.token_requests()} == {
        (fake.admin, fg.R), (fake.admin, fg.D), (fake.admin, fg.G)}


def test_google_missing_scope_gives_dwd_advice(tmp_path):
    fake, ctx = start_google(tmp_path, granted_scopes={fg.R})
    try:
        res = run(*google_args(fake, tmp_path, "--format", "json"))
        table = run(*google_args(fake, tmp_path))
        relaxed = run(*google_args(fake, tmp_path, "--no-gmail-delegates", "--format", "json"))
    finally:
        ctx.__exit__(None, None, None)
    assert res.exit_code == 1
    checks = by_name(json.loads(res.output))
    c = checks[("google", "scope admin.directory.user.readonly")]
    assert c["status"] == "missing" and c["required"]
    assert c["fix"] == ("grant scope https://www.googleapis.com/auth/admin.directory.user.readonly in Admin console → "
                        "Security → Access and data control → API controls → Domain-wide delegation for client id "
                        f"{CLIENT_ID}")
    assert "gmail.settings.basic" in checks[("google", "scope gmail.settings.basic")]["fix"]
    assert checks[("google", "scope admin.reports.audit.readonly")]["status"] == "ok"
    assert checks[("google", "Reports API: admin")]["status"] == "ok"
    assert checks[("google", "Gmail API: delegates.list")]["status"] == "missing"
    assert table.exit_code == 1 and "Domain-wide delegation" in table.output and "missing" in table.output
    # the delegate parts are optional when delegate snapshots are not wanted
    assert relaxed.exit_code == 0, relaxed.output
    assert by_name(json.loads(relaxed.output))[("google", "scope gmail.settings.basic")]["status"] == "warning"


def test_google_unprivileged_admin_and_bad_subject(tmp_path):
    fake, ctx = start_google(tmp_path, admin_privileged=False)
    try:
        res = run(*google_args(fake, tmp_path, "--format", "json", "--applications", "admin"))
        nobody = run("--credentials", str(tmp_path / "sa.json"), "--subject", "ghost@example.com",
                     "--reports-url", fake.base, "--format", "json", "--no-gmail-delegates")
    finally:
        ctx.__exit__(None, None, None)
    assert res.exit_code == 1
    c = by_name(json.loads(res.output))[("google", "Reports API: admin")]
    assert c["status"] == "missing" and "403" in c["detail"] and "super admin" in c["fix"]
    assert nobody.exit_code == 1
    c = by_name(json.loads(nobody.output))[("google", "scope admin.reports.audit.readonly")]
    assert "invalid_grant" in c["detail"] and "ghost@example.com" in c["fix"]


def test_google_bad_key_file(tmp_path):
    (tmp_path / "sa.json").write_text("{not json")
    res = run("--credentials", str(tmp_path / "sa.json"), "--subject", "a@example.com", "--format", "json")
    assert res.exit_code == 1
    assert json.loads(res.output)["checks"][0]["status"] == "missing"


def test_usage_errors():
    assert run().exit_code == 2
    assert run("--tenant", "t").exit_code == 2


# ---------------------------------------------------------------------------------------------- M365

@pytest.fixture
def o365(tmp_path, ca):
    from fake_o365 import FakeO365

    class JwtFake(FakeO365):
        """Tokens are JWTs carrying ``roles``, like Entra ID's app-only tokens."""
        roles = ["ActivityFeed.Read", "ServiceHealth.Read"]

        def _token(self, body):
            reply = super()._token(body)
            if reply.status == 200:
                opaque = reply.body["access_token"]
                token = jwt.encode({"aud": "https://manage.office.com", "tid": self.tenant, "appid": self.client_id,
                                    "roles": self.roles}, "not-a-real-signing-key-0123456789abcdef", algorithm="HS256")
                with self.lock:
                    self.tokens.pop(opaque, None)
                    self.tokens[token] = True
                reply.body["access_token"] = token
            return reply

    fake = JwtFake(ca=ca, secret=SECRET).start(tmp_path)
    yield fake
    fake.stop()


def m365_args(fake, *extra: str) -> list[str]:
    return ["--tenant", fake.tenant, "--client-id", fake.client_id, "--secret-env", "DW_TEST_SECRET",
            "--login-url", fake.base, "--api-url", fake.base, "--ca-bundle", str(fake.ca_file), *extra]


def test_m365_all_required_ok(o365):
    o365.subscriptions.update({"Audit.Exchange": "enabled", "Audit.AzureActiveDirectory": "enabled"})
    res = run(*m365_args(o365, "--format", "json"), env={"DW_TEST_SECRET": SECRET})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    checks = by_name(doc)
    assert checks[("m365", "token (client credentials)")]["status"] == "ok"
    assert checks[("m365", "permission ActivityFeed.Read")]["status"] == "ok"
    assert checks[("m365", "subscription Audit.Exchange")]["status"] == "ok"
    notes = [c for c in doc["checks"] if c["status"] == "note"]
    text = json.dumps(notes)
    assert "Get-OrganizationConfig | Format-List AuditDisabled" in text
    assert "MailItemsAccessed" in text and "Audit (Premium)" in text
    assert "UpdateFolderPermissions" in text and "-AuditOwner" in text and "-AuditDelegate" in text
    assert SECRET not in res.output


def test_m365_missing_role_and_subscription(o365):
    o365.roles = ["ServiceHealth.Read"]
    o365.subscriptions.update({"Audit.Exchange": "disabled"})
    res = run(*m365_args(o365, "--format", "json"), env={"DW_TEST_SECRET": SECRET})
    table = run(*m365_args(o365), env={"DW_TEST_SECRET": SECRET})
    assert res.exit_code == 1
    checks = by_name(json.loads(res.output))
    perm = checks[("m365", "permission ActivityFeed.Read")]
    assert perm["status"] == "missing" and "Office 365 Management APIs" in perm["fix"] and "admin consent" in perm["fix"]
    ex = checks[("m365", "subscription Audit.Exchange")]
    assert ex["status"] == "missing" and "disabled" in ex["detail"] and "subscriptions/start?contentType=Audit.Exchange" in ex["fix"]
    aad = checks[("m365", "subscription Audit.AzureActiveDirectory")]
    assert aad["status"] == "warning" and not aad["required"] and "no subscription" in aad["detail"]
    assert table.exit_code == 1 and "required check(s) failed" in table.output


def test_m365_wrong_secret_is_explained_and_never_shown(o365):
    wrong = "Wr0ng~Secret.Value-That-Must-Not-Leak_42"
    o365.echo_token_errors = True  # the token endpoint echoes the request body (with the secret) in its error
    res = run(*m365_args(o365, "--format", "json"), env={"DW_TEST_SECRET": wrong})
    table = run(*m365_args(o365), env={"DW_TEST_SECRET": wrong})
    assert res.exit_code == 1
    c = by_name(json.loads(res.output))[("m365", "token (client credentials)")]
    assert c["status"] == "missing" and "AADSTS7000215" in c["detail"] and "client secret" in c["fix"]
    for out in (res.output, table.output):
        assert wrong not in out and "Wr0ng" not in out


def test_jwt_claims_decodes_without_verifying():
    token = jwt.encode({"roles": ["ActivityFeed.Read"]}, "k" * 32, algorithm="HS256")
    assert jwt_claims(token) == {"roles": ["ActivityFeed.Read"]}
    assert jwt_claims("opaque-token") is None

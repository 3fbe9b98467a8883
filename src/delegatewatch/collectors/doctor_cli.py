"""``delegatewatch doctor``: pre-flight checks for the M365 and Google collectors (click command)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from delegatewatch.collectors.doctor import MISSING, NOTE, OK, WARNING, Check, google_checks, m365_checks, passed

STYLE = {OK: "green", MISSING: "red", WARNING: "yellow", NOTE: "cyan"}


@click.command("doctor")
@click.option("--tenant", help="M365: tenant id (GUID) or verified domain.")
@click.option("--client-id", help="M365: application (client) id of the app registration.")
@click.option("--certificate", type=click.Path(exists=True, dir_okay=False),
              help="M365: PEM file with the app's certificate and private key.")
@click.option("--certificate-passphrase-env", metavar="NAME", help="M365: variable holding the key's passphrase.")
@click.option("--secret-env", metavar="NAME", help="M365: variable holding the client secret (never on the command line).")
@click.option("--cloud", type=click.Choice(["commercial", "gcc", "gcchigh", "dod"]), default="commercial",
              show_default=True, help="M365: cloud (login and API hosts).")
@click.option("--login-url", default=None, help="M365: authority host override (tests, proxies).")
@click.option("--api-url", default=None, help="M365: Management API root override.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), default=None,
              help="M365: extra CA file for TLS (proxies, tests).")
@click.option("--credentials", type=click.Path(dir_okay=False),
              help="Google: service-account key file (JSON) with domain-wide delegation.")
@click.option("--subject", help="Google: administrator to impersonate.")
@click.option("--applications", default="admin,user_accounts,token,gmail", show_default=True,
              help="Google: Reports API applications to probe.")
@click.option("--gmail-delegates/--no-gmail-delegates", default=True, show_default=True,
              help="Google: Directory and Gmail delegates access is required (for --gmail-delegates collection).")
@click.option("--test-user", default=None, help="Google: user whose Gmail delegates are read (default: --subject).")
@click.option("--reports-url", default=None, help="Google: Reports API base URL override.")
@click.option("--directory-url", default=None, help="Google: Directory API base URL override.")
@click.option("--gmail-url", default=None, help="Google: Gmail API base URL override.")
@click.option("--token-uri", default=None, help="Google: token endpoint override (default: the key file's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR is honoured too).")
def doctor_command(tenant: str | None, client_id: str | None, certificate: str | None,
                   certificate_passphrase_env: str | None, secret_env: str | None, cloud: str,
                   login_url: str | None, api_url: str | None, ca_bundle: str | None, credentials: str | None,
                   subject: str | None, applications: str, gmail_delegates: bool, test_user: str | None,
                   reports_url: str | None, directory_url: str | None, gmail_url: str | None,
                   token_uri: str | None, fmt: str, no_color: bool) -> None:
    """Check that the collectors can run: credentials, permissions/scopes, subscriptions, API reach.

    Give the M365 options (--tenant, --client-id, --certificate or --secret-env), the Google options
    (--credentials, --subject), or both. Exit 0 when every required check passes, 1 otherwise,
    2 on wrong usage.
    """
    want_m365 = any([tenant, client_id, certificate, secret_env])
    want_google = any([credentials, subject])
    if not (want_m365 or want_google):
        raise click.UsageError("give M365 options (--tenant --client-id --certificate|--secret-env) "
                               "and/or Google options (--credentials --subject)")
    checks: list[Check] = []
    if want_m365:
        if not (tenant and client_id) or bool(certificate) == bool(secret_env):
            raise click.UsageError("M365 needs --tenant, --client-id and one of --certificate or --secret-env")
        checks += _m365(tenant, client_id, certificate, certificate_passphrase_env, secret_env, cloud,
                        login_url, api_url, ca_bundle)
    if want_google:
        if not (credentials and subject):
            raise click.UsageError("Google needs --credentials and --subject")
        checks += google_checks(credentials, subject,
                                applications=[a.strip() for a in applications.split(",") if a.strip()],
                                gmail_delegates=gmail_delegates, test_user=test_user, reports_url=reports_url,
                                directory_url=directory_url, gmail_url=gmail_url, token_uri=token_uri)
    ok = passed(checks)
    if fmt == "json":
        click.echo(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        console = Console(highlight=False, no_color=no_color or bool(os.environ.get("NO_COLOR")))
        if not console.is_terminal:
            console.width = max(console.width, 160)
        table = Table(title="delegatewatch doctor", show_lines=True)
        for col in ("area", "check", "status", "required", "detail", "how to fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(c.area, escape(c.name), f"[{STYLE[c.status]}]{c.status}[/]", "yes" if c.required else "no",
                          escape(c.detail), escape(c.fix))
        console.print(table)
        bad = sum(1 for c in checks if c.required and c.status != OK)
        console.print("[green]all required checks pass[/green]" if ok
                      else f"[red]{bad} required check(s) failed[/red]")
    sys.exit(0 if ok else 1)


def _m365(tenant, client_id, certificate, passphrase_env, secret_env, cloud, login_url, api_url,
          ca_bundle) -> list[Check]:
    from delegatewatch.collectors.m365 import CollectorError, M365Config

    def env(name: str | None) -> str | None:
        if not name:
            return None
        value = os.environ.get(name)
        if not value:
            raise click.UsageError(f"environment variable {name} is not set or empty")
        return value

    config = M365Config(tenant=tenant, client_id=client_id, out=Path("."), secret=env(secret_env),
                        certificate=Path(certificate) if certificate else None,
                        certificate_passphrase=env(passphrase_env), cloud=cloud, login_url=login_url,
                        api_url=api_url, ca_bundle=ca_bundle, timeout=20.0, secret_env=secret_env)
    try:
        config.validate()
    except CollectorError as exc:
        return [Check("m365", "settings", MISSING, True, str(exc), "")]
    from delegatewatch.collectors.retry import RetryPolicy
    config.retry = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=2.0)
    return m365_checks(config)

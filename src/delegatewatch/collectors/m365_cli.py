"""``delegatewatch collect m365``: the Management Activity API into ``--out DIR`` (see docs/collect.md)."""

from __future__ import annotations

import logging
import re
import sys
from datetime import timedelta
from pathlib import Path

import click

from delegatewatch.collectors.redact import RedactingFilter, Redactor

_DURATION = re.compile(r"(\d+)\s*([dhm])", re.IGNORECASE)


def parse_since(text: str) -> timedelta:
    """``7d``, ``36h``, ``1d12h``, ``90m`` → timedelta."""
    t = text.strip().lower().replace(" ", "")
    if not t or _DURATION.sub("", t):
        raise click.BadParameter(f"{text!r}: use a duration such as 7d, 24h, 1d12h or 90m")
    total = timedelta()
    for n, unit in _DURATION.findall(t):
        total += {"d": timedelta(days=int(n)), "h": timedelta(hours=int(n)), "m": timedelta(minutes=int(n))}[unit]
    if total <= timedelta(0):
        raise click.BadParameter("must be more than zero")
    return total


def _content_types(values: tuple[str, ...]) -> tuple[str, ...]:
    from delegatewatch.collectors.m365 import CONTENT_TYPES, DEFAULT_CONTENT_TYPES
    if not values:
        return DEFAULT_CONTENT_TYPES
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    canon = {c.lower(): c for c in CONTENT_TYPES}
    out: list[str] = []
    for n in names:
        if n.lower() == "all":
            out.extend(CONTENT_TYPES)
        elif n.lower() in canon:
            out.append(canon[n.lower()])
        else:
            raise click.BadParameter(f"{n!r}; known: {', '.join(CONTENT_TYPES)}, all", param_hint="--content-types")
    return tuple(dict.fromkeys(out))


@click.command("m365")
@click.option("--tenant", required=True, help="Tenant id (GUID) of the audited organisation.")
@click.option("--client-id", required=True, help="Application (client) id of the app registration.")
@click.option("--certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM file with the app's certificate and private key (thumbprint is computed).")
@click.option("--certificate-passphrase-env", metavar="VAR",
              help="Environment variable holding the private key's passphrase, if it is encrypted.")
@click.option("--secret-env", metavar="VAR",
              help="Environment variable holding the client secret (the value is never printed).")
@click.option("--cloud", type=click.Choice(["commercial", "gcc", "gcchigh", "dod"]), default="commercial",
              show_default=True, help="Microsoft 365 cloud (sets the login and API hosts).")
@click.option("--since", "since", default="7d", show_default=True,
              help="How far back to collect (the API keeps 7 days): 7d, 36h, 1d12h, 90m.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created); state for restarts is kept in OUT/.state.")
@click.option("--content-types", "content_types", multiple=True, metavar="LIST",
              help="Comma-separated content types, or 'all' [default: Audit.Exchange,Audit.AzureActiveDirectory].")
@click.option("--publisher-id", metavar="GUID", help="PublisherIdentifier for the API quota [default: the tenant id].")
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Blob downloads in parallel.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and the final summary.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging (secrets are still redacted).")
# Hidden: point the collector at other endpoints (tests, a local proxy).
@click.option("--login-url", envvar="DELEGATEWATCH_M365_LOGIN_URL", hidden=True)
@click.option("--api-url", envvar="DELEGATEWATCH_M365_API_URL", hidden=True)
@click.option("--ca-bundle", envvar="DELEGATEWATCH_CA_BUNDLE", hidden=True,
              type=click.Path(exists=True, dir_okay=False))
@click.option("--batch-blobs", type=click.IntRange(1), default=200, hidden=True)
@click.option("--retry-base-delay", type=float, default=1.0, hidden=True)
@click.option("--max-attempts", type=click.IntRange(1), default=8, hidden=True)
@click.option("--compress-threads", type=click.IntRange(0, 16), default=None, hidden=True)
def m365_command(tenant: str, client_id: str, certificate: Path | None, certificate_passphrase_env: str | None,
                 secret_env: str | None, cloud: str, since: str, out: Path, content_types: tuple[str, ...],
                 publisher_id: str | None, concurrency: int, quiet: bool, verbose: bool, login_url: str | None,
                 api_url: str | None, ca_bundle: str | None, batch_blobs: int, retry_base_delay: float,
                 max_attempts: int, compress_threads: int | None) -> None:
    """Collect Microsoft 365 audit records from the Office 365 Management Activity API.

    Needs an app registration with the Office 365 Management APIs application permission
    ActivityFeed.Read (admin consented). Writes OUT/<content type>/<day>/part-<n>.ndjson.gz and
    OUT/manifest.json; run it again (or after a crash) to continue. Exit status: 0 everything
    collected, 1 some content could not be collected (see the manifest), 2 could not run.
    """
    from delegatewatch.collectors.m365 import (
        CollectorError,
        M365Collector,
        M365Config,
        env_secret,
    )
    from delegatewatch.collectors.retry import RetryPolicy

    err = sys.stderr
    if bool(certificate) == bool(secret_env):
        raise click.UsageError("give exactly one of --certificate PEM or --secret-env VAR")
    try:
        since_delta = parse_since(since)
        types = _content_types(content_types)
    except click.BadParameter as exc:
        raise click.UsageError(str(exc)) from None
    try:
        secret = env_secret(secret_env) if secret_env else None
        passphrase = env_secret(certificate_passphrase_env) if certificate_passphrase_env else None
    except CollectorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    redactor = Redactor(secret, passphrase)
    handler = logging.StreamHandler(err)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("delegatewatch")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    if verbose:  # msal and httpx speak at debug level too; they go through the same redacting handler
        for name in ("msal", "httpx"):
            lg = logging.getLogger(name)
            lg.addHandler(handler)
            lg.setLevel(logging.DEBUG)
    config = M365Config(
        tenant=tenant, client_id=client_id, out=out, secret=secret, certificate=certificate,
        certificate_passphrase=passphrase, cloud=cloud, since=since_delta, content_types=types,
        publisher_id=publisher_id, login_url=login_url, api_url=api_url, ca_bundle=ca_bundle,
        concurrency=concurrency, batch_blobs=batch_blobs, secret_env=secret_env, compress_threads=compress_threads,
        retry=RetryPolicy(max_attempts=max_attempts, base_delay=retry_base_delay))
    try:
        with M365Collector(config) as collector:
            result = collector.run_once()
    except CollectorError as exc:
        click.echo(redactor(f"error: {exc}"), err=True)
        sys.exit(2)
    finally:
        logger.removeHandler(handler)
    lines = [(f"stored {result.records:,} record(s) in {len(result.files)} new file(s); "
             f"{result.duplicates:,} duplicate(s) dropped; blobs fetched {result.blobs_fetched}, "
             f"not fetched {result.blobs_failed}; throttled {result.throttled} time(s)")]
    for issue in result.errors[:20]:
        lines.append(f"  {issue}")
    if len(result.errors) > 20:
        lines.append(f"  … {len(result.errors) - 20} more in the manifest")
    lines.append(f"manifest: {result.manifest}")
    click.echo(redactor("\n".join(lines)), err=True)
    sys.exit(0 if result.complete else 1)


if __name__ == "__main__":  # python -m delegatewatch.collectors.m365_cli (tests run it as a subprocess)
    m365_command(prog_name="delegatewatch collect m365")

"""Run a simulation: the tenant, the scenarios, then every day (in worker processes when asked), each
day written an hour at a time by the chosen format writers; then snapshots, the directory and labels.

Each day depends only on (seed, parameters, day), so the output is byte-identical whatever ``jobs``.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from delegatewatch.simulate.background import Background
from delegatewatch.simulate.clock import date_of, day_start
from delegatewatch.simulate.labels import write_labels
from delegatewatch.simulate.model import Instance, Item, LabelRecord
from delegatewatch.simulate.scenarios import SCENARIOS, inject
from delegatewatch.simulate.tenant import ORG_NAME, Tenant, build_tenant
from delegatewatch.simulate.writers import (
    DEFAULT_FORMATS,
    FORMATS,
    SNAPSHOTS,
    UAL_FORMATS,
    WRITERS,
)
from delegatewatch.simulate.writers.snapshots import (
    baseline_rows,
    grant_rows,
    write_snapshot,
)

EVIDENCE = "evidence"
LABELS = "labels.json"
DIRECTORY = "directory.csv"
CONFIG = "delegatewatch.toml"
MIN_DAYS = 14


@dataclass(frozen=True)
class SimConfig:
    users: int = 200
    days: int = 14
    seed: int = 1
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    formats: tuple[str, ...] = DEFAULT_FORMATS
    start: str = "2025-12-01"
    #: multiplies every background rate (1.0: the rates in docs/simulate.md)
    density: float = 1.0
    #: instances of each scenario
    instances: int = 1
    jobs: int = 1

    def check(self) -> None:
        if self.days < MIN_DAYS:
            raise ValueError(f"--days must be at least {MIN_DAYS}: scenarios sit in the second half, after a week "
                             "of history (the send-volume baseline needs 7 active days)")
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        if self.instances < 1:
            raise ValueError("--instances must be at least 1")
        if self.density <= 0:
            raise ValueError("--density must be positive")
        try:
            day_start(self.start)
        except ValueError:
            raise ValueError(f"--start {self.start!r}: expected a date as YYYY-MM-DD") from None


@dataclass
class SimResult:
    out: Path
    records: int
    files: dict[str, int]
    instances: list[Instance]
    seconds: float
    dropped: list[str] = field(default_factory=list)  # scenario records with no writer chosen for their stream


# -- one day, in any process -----------------------------------------------------------------------
_CACHE: dict[tuple, tuple[Tenant, Background]] = {}


def _world(cfg: SimConfig) -> tuple[Tenant, Background]:
    key = (cfg.users, cfg.seed, cfg.start, cfg.days, cfg.density)
    if key not in _CACHE:
        tenant = build_tenant(cfg.users, cfg.seed)
        _CACHE.clear()
        _CACHE[key] = (tenant, Background(tenant, day_start(cfg.start), cfg.days, cfg.density))
    return _CACHE[key]


def _writers_for_day(cfg: SimConfig, day: int) -> list[str]:
    """Every chosen non-UAL format, and one of the chosen UAL dialects (they take turns by day)."""
    ual = [f for f in cfg.formats if f in UAL_FORMATS]
    names = [f for f in cfg.formats if f in WRITERS and f not in UAL_FORMATS]
    if ual:
        names.insert(0, ual[day % len(ual)])
    return names


def run_day(args: tuple[SimConfig, Path, int, list[Item]]) -> tuple[dict[str, int], list[tuple[str, LabelRecord]], int, set[str]]:
    cfg, root, day, injected = args
    _, bg = _world(cfg)
    t0 = bg.start + day * 86400
    date = date_of(t0)
    writers = [WRITERS[name](root, date, day) for name in _writers_for_day(cfg, day)]
    by_stream: dict[str, list] = {}
    for w in writers:
        by_stream.setdefault(w.stream, []).append(w)
    by_hour: dict[int, list[Item]] = {}
    for it in injected:
        by_hour.setdefault(int(it.t - t0) // 3600, []).append(it)
    written = 0
    dropped: set[str] = set()
    for hour in range(24):
        items = bg.hour(day, hour, cfg.seed) + by_hour.get(hour, [])
        items.sort(key=lambda it: it.t)
        per: dict[str, list[Item]] = {}
        for it in items:
            per.setdefault(it.stream, []).append(it)
        for stream, its in per.items():
            ws = by_stream.get(stream)
            if not ws:
                dropped.update(it.tag for it in its if it.tag)
                continue
            for w in ws:
                w.hour(its)
    counts: dict[str, int] = {}
    labels: list[tuple[str, LabelRecord]] = []
    for w in writers:
        c, lab = w.finish()
        counts.update(c)
        written += sum(c.values())
        labels.extend((item.tag, rec) for item, rec in lab)
    return counts, labels, written, dropped


# -- the whole run -----------------------------------------------------------------------------------
def simulate(cfg: SimConfig, out: Path, on_day: Callable[[int, int], None] | None = None) -> SimResult:
    """Write the simulated tenant under ``out`` (``evidence/``, ``directory.csv``, ``labels.json``)."""
    cfg.check()
    began = time.perf_counter()
    out = Path(out)
    root = out / EVIDENCE
    if root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} already holds files (an earlier simulation?): choose an empty folder or remove it, "
                         "so no stale file is hunted with the new ones")
    root.mkdir(parents=True, exist_ok=True)
    tenant, bg = _world(cfg)
    injected = inject(list(cfg.scenarios), tenant, bg.start, cfg.days, cfg.seed, cfg.instances)
    per_day: dict[int, list[Item]] = {}
    for inj in injected:
        for it in inj.items:
            per_day.setdefault(int(it.t - bg.start) // 86400, []).append(it)
    tasks = [(cfg, root, d, per_day.get(d, [])) for d in range(cfg.days)]
    files: dict[str, int] = {}
    labels: dict[str, list[LabelRecord]] = {inj.id: [] for inj in injected}
    records = 0
    dropped: set[str] = set()

    def take(day: int, result: tuple) -> None:
        nonlocal records
        counts, labs, written, lost = result
        files.update(counts)
        for tag, rec in labs:
            labels[tag].append(rec)
        records += written
        dropped.update(lost)
        if on_day is not None:
            on_day(day, written)

    if cfg.jobs > 1 and cfg.days > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(cfg.jobs, cfg.days)) as pool:
            for day, result in enumerate(pool.imap(run_day, tasks)):
                take(day, result)
    else:
        for day, task in enumerate(tasks):
            take(day, run_day(task))
    if SNAPSHOTS in cfg.formats:
        base = baseline_rows(tenant)
        before, _ = write_snapshot(root, bg.start - 3600, base)
        after, snap_labels = write_snapshot(root, bg.start + cfg.days * 86400 - 3600, base + grant_rows(injected))
        files.update(before)
        files.update(after)
        records += sum(before.values()) + sum(after.values())
        for tag, rec in snap_labels:
            labels[tag].append(rec)
    instances = []
    for inj in injected:
        recs = sorted(labels[inj.id], key=lambda r: (r.time, r.file, r.line or 0))
        rules = [r for r in inj.expect_rules if SNAPSHOTS in cfg.formats or not r.startswith("snapshot_")]
        instances.append(Instance(inj.id, inj.scenario, inj.summary, recs, rules))
    write_directory(out / DIRECTORY, tenant)
    write_config(out / CONFIG, tenant)
    params = {"users": cfg.users, "days": cfg.days, "seed": cfg.seed, "start": cfg.start, "density": cfg.density,
              "instances": cfg.instances, "scenarios": list(cfg.scenarios), "formats": list(cfg.formats), "records": records}
    write_labels(out / LABELS, params, dict(sorted(files.items())), instances)
    return SimResult(out, records, files, instances, time.perf_counter() - began, sorted(dropped))


def write_directory(path: Path, tenant: Tenant) -> None:
    """Entra ID users export (the ``--directory`` file): resolves the GUIDs that cmdlets log."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["id", "userPrincipalName", "displayName", "userType", "accountEnabled", "mail"])
    for p in tenant.people:
        w.writerow([p.object_id, p.upn, p.name, "Member", "True", p.upn])
    w.writerow(["5b0f2e7a-91c4-4c1e-8d2a-3f6b7c8d9e01", f"j.doe_fabrikam.example#EXT#@{ORG_NAME}", "J. Doe (Fabrikam)",
                "Guest", "True", "j.doe@fabrikam.example"])
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")


def write_config(path: Path, tenant: Tenant) -> None:
    """The organisation's configuration (docs/configuration.md): its documented delegation (``[allow]``:
    assistants, shared-mailbox members, the subsidiary's standing Gmail delegates) and its bulk senders
    (``[mailflow]``: the newsletter and the alert mailbox). Hunt with ``--config``."""
    pairs = [(tenant.people[e].upn, a.upn) for e, a in sorted(tenant.assistants.items())]
    pairs += [(s.upn, m.upn) for s in tenant.shared for m in tenant.shared_members[s.index]]
    gp = tenant.google_people
    pairs += [(p.google_email, gp[i + 1].google_email) for i, p in enumerate(gp) if i % 15 == 0 and i + 1 < len(gp)]
    lines = ["# Expected delegation of the simulated organisation (delegatewatch simulate).", "[allow]", "pairs = ["]
    lines += [f'    ["{m}", "{g}"],' for m, g in pairs]
    lines.append("]")
    lines += ["", "[mailflow]", f'newsletter_senders = ["{tenant.newsletter.upn}"]',
              f'service_accounts = ["{tenant.alerts.upn}"]']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

"""`hub sync list | run NAME | history NAME`: the syncs of mappings/syncs.yaml, as applied.

`run` pulls in the foreground, taking the job the way a scheduled run does (a run never overlaps
another: a job queued or running is refused), with a progress line on stderr; `--dry-run` pulls
and counts without writing anything. Bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Any

import click
import orjson

from hub.core.errors import HubError


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(sync)


@click.group("sync")
def sync() -> None:
    """Scheduled pulls of a source's API that catch the webhooks it never sent."""


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """An ISO 8601 time (naive: UTC) or a duration back from now (`2h`, `3d`)."""
    if value is None:
        return None
    from datetime import UTC

    from hub.core.units import parse_duration

    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise HubError(
            f"--since: not a time or a duration: {value!r} (e.g. 2026-11-30T08:00:00Z or 6h)"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@sync.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_syncs(as_json: bool) -> None:
    """Each sync and tenant: state, last run and what it found, next run."""
    from sqlalchemy.orm import Session

    from hub.cli.group import load_settings
    from hub.cli.status import sync_table
    from hub.core.db import check_database, create_db_engine
    from hub.core.models import utcnow
    from hub.sync.status import sync_stats

    engine = create_db_engine(load_settings())
    try:
        check_database(engine)
        with Session(engine) as session:
            rows = sync_stats(session, utcnow())
    finally:
        engine.dispose()
    if as_json:
        _echo_json(rows)
    elif not rows:
        click.echo("no syncs applied (mappings/syncs.yaml, then `hub mappings apply`)")
    else:
        click.echo(sync_table(rows))


@sync.command("history")
@click.argument("name")
@click.option("--tenant", help="Only this tenant's runs.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def history(name: str, tenant: str | None, limit: int, as_json: bool) -> None:
    """The latest runs of sync NAME, newest first."""
    from sqlalchemy.orm import Session

    from hub.cli.group import load_settings
    from hub.cli.status import table
    from hub.core.db import check_database, create_db_engine
    from hub.core.models import utcnow
    from hub.sync import status

    engine = create_db_engine(load_settings())
    try:
        check_database(engine)
        with Session(engine) as session:
            _known(session, name, tenant)
            runs = status.history(session, name, tenant, utcnow(), limit)
    finally:
        engine.dispose()
    if as_json:
        _echo_json(runs)
        return
    rows = [
        [
            r["started_at"],
            r["tenant"],
            r["trigger"],
            r["status"],
            r["duration_s"],
            r["pages"],
            r["items"],
            r["created"],
            r["duplicates"],
            r["errors"],
            r["retries"],
            r["error"] or r["high_water_mark"],
        ]
        for r in runs
    ]
    headers = ["started", "tenant", "trigger", "status", "took (s)", "pages", "items", "missed"]
    headers += ["duplicates", "errors", "retries", "mark / error"]
    click.echo(table(headers, rows) if rows else f"sync {name}: no runs yet")


def _known(session: Any, name: str, tenant: str | None) -> list[tuple[int, str]]:
    """(job id, tenant slug) of the active jobs of `name`; HubError naming what is known."""
    from sqlalchemy import select

    from hub.core.models import SyncJob, Tenant

    rows = session.execute(
        select(SyncJob.id, SyncJob.name, Tenant.slug)
        .join(Tenant, Tenant.id == SyncJob.tenant_id)
        .where(SyncJob.active.is_(True))
        .order_by(SyncJob.name, Tenant.slug)
    ).all()
    names = sorted({r.name for r in rows})
    if name not in names:
        raise HubError(f"no sync {name!r} applied (known: {', '.join(names) or 'none'})")
    jobs = [(r.id, r.slug) for r in rows if r.name == name]
    if tenant is not None:
        jobs = [(i, slug) for i, slug in jobs if slug == tenant]
        if not jobs:
            raise HubError(f"sync {name!r} does not run for tenant {tenant!r}")
    return jobs


@sync.command("run")
@click.argument("name")
@click.option("--tenant", help="Only this tenant (default: every tenant of the sync).")
@click.option("--since", help="Window start instead of the mark: ISO time, or a duration (6h).")
@click.option("--dry-run", is_flag=True, help="Pull and count new and duplicate items; store none.")
def run(name: str, tenant: str | None, since: str | None, dry_run: bool) -> None:
    """Run sync NAME now, in the foreground, and print what it found."""
    from hub.cli.group import load_settings
    from hub.core.db import check_database
    from hub.core.errors import SyncBusy
    from hub.core.models import utcnow
    from hub.sync.run import Progress, run_job
    from hub.sync.run import dry_run as pull_only
    from workers.context import WorkerContext

    start = parse_since(since, utcnow())
    settings = load_settings()
    ctx = WorkerContext.from_settings(settings)
    try:
        check_database(ctx.engine)
        with ctx.sessions() as session:
            jobs = _known(session, name, tenant)
        failed: list[str] = []
        for job_id, slug in jobs:
            label = f"{name}/{slug}"
            line = _ProgressLine(label)
            if dry_run:
                result = pull_only(ctx, job_id, since=start, progress_line=line)
            else:
                found = run_job(ctx, job_id, trigger="manual", since=start, progress_line=line)
                if found is None:
                    raise SyncBusy(f"sync {label} is already queued or running; try again later")
                result = found
            line.done()
            p: Progress = result.progress
            verb = "would create" if dry_run else "created"
            state = "ok" if result.ok else "FAILED"
            click.echo(
                f"{label}: {state}: {p.pages} pages, {p.items} items, {verb} {p.created} "
                f"(missed webhooks), {p.duplicates} duplicates, {p.errors} errors, "
                f"{p.retries} retries"
                + (f"; mark {result.mark.isoformat()}Z" if result.mark and not dry_run else "")
                + (f"; {result.error}" if result.error else "")
            )
            if not result.ok:
                failed.append(f"{label}: {result.error}")
    finally:
        ctx.close()
    if failed:
        raise HubError("sync failed: " + "; ".join(failed))


class _ProgressLine:
    """`label: page N, items, new, duplicates` on stderr: rewritten in place on a terminal,
    one line every 50 pages otherwise."""

    EVERY = 50

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, p: Any) -> None:
        if not self.tty and p.pages % self.EVERY:
            return
        text = f"{self.label}: page {p.pages}, {p.items} items, {p.created} new, "
        text += f"{p.duplicates} duplicates"
        if self.tty:
            click.echo("\r" + text, nl=False, err=True)
            self.shown = True
        else:
            click.echo(text, err=True)

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)

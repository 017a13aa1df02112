"""`hub replay`, `hub dead-letters list|show|discard` and `hub purge`: the operator's repair kit.

They call the same functions as the admin API (`hub.ops.replay`, `hub.core.dead_letters`,
`hub.ops.purge`).
An unknown id exits 2; filters that match nothing say so and exit 0.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import orjson
from redis import Redis
from sqlalchemy import Engine

from hub.core.errors import BadRequest


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(replay)
    cli.add_command(dead_letters_group)
    cli.add_command(purge)


@contextmanager
def _services(redis_needed: bool = True) -> Iterator[tuple[Engine, Redis | None]]:
    from hub.cli.group import load_settings
    from hub.core.db import check_database, create_db_engine
    from hub.core.queues import check_redis, connect_redis

    settings = load_settings()
    engine = create_db_engine(settings)
    redis = connect_redis(settings) if redis_needed else None
    try:
        check_database(engine)
        if redis is not None:
            check_redis(redis, settings)
        yield engine, redis
    finally:
        if redis is not None:
            redis.close()
        engine.dispose()


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@click.command()
@click.option("--dead-letter", "dead_letter_id", metavar="ID", help="Replay one dead letter.")
@click.option("--event", "event_id", metavar="ID", help="Replay an event's dead letters.")
@click.option(
    "--all", "replay_all", is_flag=True, help="Replay every open dead letter matching the filters."
)
@click.option("--source", help="With --all: only this source.")
@click.option("--endpoint", help="With --all: only this endpoint.")
@click.option("--tenant", metavar="SLUG", help="With --all: only this tenant.")
@click.option(
    "--since", metavar="TIME", help="With --all: opened at or after (ISO time, or an age: 2h, 3d)."
)
@click.option("--until", metavar="TIME", help="With --all: opened before (ISO time, or an age).")
@click.option("--limit", type=click.IntRange(1), help="With --all: at most this many.")
@click.option("--remap", is_flag=True, help="Run the events through today's mappings instead.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def replay(
    dead_letter_id: str | None,
    event_id: str | None,
    replay_all: bool,
    source: str | None,
    endpoint: str | None,
    tenant: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    remap: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Send failed deliveries again (same webhook-id), or re-run events through the mappings.

    One item goes through the `retry` queue, a bulk run (--all) through `low`. The dead letter
    becomes `replayed` once the new attempt succeeds; replaying something already delivered does
    nothing and says so.
    """
    from sqlalchemy.orm import Session

    from hub.core import audit
    from hub.core.dead_letters import DeadLetterFilter
    from hub.ops import replay as replaying

    chosen = [x for x in (dead_letter_id, event_id) if x] + (["--all"] if replay_all else [])
    if len(chosen) != 1:
        raise BadRequest("give exactly one of --dead-letter ID, --event ID or --all")
    filters = any(v is not None for v in (source, endpoint, tenant, since, until, limit))
    if filters and not replay_all:
        raise BadRequest(
            "--source, --endpoint, --tenant, --since, --until and --limit go with --all"
        )

    with _services() as (engine, redis):
        assert redis is not None
        if dead_letter_id:
            report = replaying.request_dead_letter(
                engine, redis, dead_letter_id, remap=remap, dry_run=dry_run, actor=audit.cli_actor()
            )
        elif event_id:
            report = replaying.request_event(
                engine, redis, event_id, remap=remap, dry_run=dry_run, actor=audit.cli_actor()
            )
        else:
            with Session(engine) as session:
                where = DeadLetterFilter(
                    source=source,
                    endpoint=endpoint,
                    tenant_id=replaying.tenant_id_of(session, tenant) if tenant else None,
                    since=replaying.parse_time(since) if since else None,
                    until=replaying.parse_time(until) if until else None,
                )
            total = replaying.count_dead_letters(engine, where)
            if limit is not None:
                total = min(total, limit)
            if total == 0:
                message = "no open dead letter matches these filters; nothing to replay"
                if as_json:
                    _echo_json({"summary": message, "items": []})
                else:
                    click.echo(message)
                return
            with click.progressbar(
                length=total,
                label="replaying" if not dry_run else "checking",
                file=sys.stderr,
            ) as bar:
                report = replaying.request_bulk(
                    engine,
                    redis,
                    where,
                    limit=limit,
                    remap=remap,
                    dry_run=dry_run,
                    progress=bar.update,
                    actor=audit.cli_actor(),
                )
    if as_json:
        _echo_json(report.as_dict())
        return
    for item in report.items:
        if item.action == "skip" or not replay_all or dry_run:
            what = f"{item.kind} {item.id}"
            if item.action == "skip":
                click.echo(f"{what}: nothing to do: {item.reason}")
            else:
                verb = {"replay": "resend", "remap": "remap"}[item.action]
                target = f" (delivery {item.delivery_id})" if item.delivery_id else ""
                prefix = "would " if dry_run else "will "
                click.echo(f"{what}: {prefix}{verb}{target}")
    click.echo(report.summary())


@click.group("dead-letters")
def dead_letters_group() -> None:
    """What hub gave up on: list, show, discard (replay with `hub replay`)."""


@dead_letters_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "replayed", "discarded", "all"]),
    default="open",
    show_default=True,
)
@click.option("--stage", type=click.Choice(["ingest", "mapping", "delivery"]))
@click.option("--source")
@click.option("--endpoint")
@click.option("--tenant", metavar="SLUG")
@click.option("--since", metavar="TIME", help="ISO time, or an age: 2h, 3d.")
@click.option("--until", metavar="TIME")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_command(
    status: str,
    stage: str | None,
    source: str | None,
    endpoint: str | None,
    tenant: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Dead letters, newest first."""
    from sqlalchemy.orm import Session

    from hub.cli.status import table
    from hub.core import dead_letters
    from hub.core.dead_letters import DeadLetterFilter
    from hub.core.models import DeadLetterStage, DeadLetterStatus
    from hub.ops.admin import dead_letter_dict
    from hub.ops.replay import parse_time, tenant_id_of

    with _services(redis_needed=False) as (engine, _), Session(engine) as session:
        where = DeadLetterFilter(
            status=None if status == "all" else DeadLetterStatus(status),
            stage=DeadLetterStage(stage) if stage else None,
            source=source,
            endpoint=endpoint,
            tenant_id=tenant_id_of(session, tenant) if tenant else None,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
        )
        letters = dead_letters.list_dead_letters(session, where, limit=limit)
        total = dead_letters.count(session, where)
        rows = [dead_letter_dict(dl) for dl in letters]
    if as_json:
        _echo_json({"dead_letters": rows, "total": total})
        return
    if not rows:
        click.echo("no dead letters match")
        return
    click.echo(
        table(
            ["id", "created", "stage", "status", "source", "endpoint", "attempts", "reason"],
            [
                [
                    r["id"],
                    r["created_at"][:19],
                    r["stage"],
                    r["status"],
                    r["source"],
                    r["endpoint"],
                    r["attempts"],
                    (r["reason"] or "")[:60],
                ]
                for r in rows
            ],
        )
    )
    click.echo(f"{len(rows)} shown of {total}")


@dead_letters_group.command("show")
@click.argument("dead_letter_id")
def show_command(dead_letter_id: str) -> None:
    """One dead letter, with its event's deliveries and attempts, as JSON."""
    from sqlalchemy.orm import Session

    from hub.cli.group import load_settings
    from hub.core import dead_letters
    from hub.core.crypto import Cipher
    from hub.core.models import KeyKind
    from hub.ingress.principals import Principal
    from hub.ops.admin import dead_letter_dict, show_event

    with _services(redis_needed=False) as (engine, _):
        with Session(engine) as session:
            letter = dead_letter_dict(dead_letters.get(session, dead_letter_id))
        operator = Principal(key_id=0, kind=KeyKind.OPERATOR, tenant_id=None, tenant_slug=None)
        cipher = Cipher.from_settings(load_settings())
        event = show_event(engine, operator, letter["event_id"], cipher)
    _echo_json({"dead_letter": letter, **event})


@dead_letters_group.command("discard")
@click.argument("dead_letter_ids", nargs=-1, required=True)
def discard_command(dead_letter_ids: tuple[str, ...]) -> None:
    """Close open dead letters without replaying them."""
    from sqlalchemy.orm import Session

    from hub.core import audit, dead_letters

    with _services(redis_needed=False) as (engine, _), Session(engine) as session:
        with session.begin():
            letters = [dead_letters.get(session, i) for i in dead_letter_ids]  # all exist, or none
            for letter in letters:
                before = letter.status.value
                dead_letters.discard(session, letter.id, actor=audit.cli_actor())
                if before == "open":
                    click.echo(f"{letter.id}: discarded")
                else:
                    click.echo(f"{letter.id}: nothing to do: already {before}")


@click.command()
@click.option("--older-than", required=True, metavar="AGE", help="e.g. 90d: payloads older go.")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
def purge(older_than: str, batch_size: int, dry_run: bool) -> None:
    """Retention: drop payloads of finished events and deliveries; the rows stay.

    Events `processed`/`no_route` and deliveries `delivered` (or `dead` with no open dead letter)
    created before the cutoff lose their stored payload. Small batches by primary key, so tables
    are never locked for long.
    """
    from datetime import timedelta

    from hub.core.units import parse_duration
    from hub.ops.purge import purge as run_purge

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise BadRequest(f"--older-than: {exc}") from exc
    if seconds <= 0:
        raise BadRequest("--older-than must be more than 0 (e.g. 90d)")

    def progress(what: str, done: int) -> None:
        click.echo(f"  {what}: {done} {'would be ' if dry_run else ''}purged so far", err=True)

    with _services(redis_needed=False) as (engine, _):
        result = run_purge(
            engine,
            timedelta(seconds=seconds),
            batch_size=batch_size,
            dry_run=dry_run,
            progress=progress,
        )
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} payloads of {result.events} events and {result.deliveries} deliveries "
        f"created before {result.cutoff.isoformat(timespec='seconds')}Z"
    )

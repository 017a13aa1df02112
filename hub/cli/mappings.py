"""`hub mappings check|apply|test [DIR]`: validate, publish and unit-test the mappings directory.

check and apply include syncs.yaml (hub.sync.config): its problems are listed with the others,
and apply writes its sync jobs (hub.sync.schedule) after the rules and endpoints.

DIR defaults to HUB_MAPPINGS_DIR (`mappings`). Problems go to stderr, one per line as
`file:line path: message`; the exit code is 0 when all is well and 2 otherwise.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from hub.cli.group import load_settings
from hub.core.errors import HubError, MappingsError
from hub.mapping.config import MappingsConfig, load_mappings
from hub.sync.config import SyncConfig, read_syncs


def _load(directory: Path | None) -> tuple[MappingsConfig, Path]:
    settings = load_settings()
    path = directory or settings.mappings_dir
    return load_mappings(path), path


def load_all(path: Path) -> tuple[MappingsConfig, dict[str, SyncConfig]]:
    """The mappings and the syncs of `path`; one MappingsError lists the problems of both."""
    from hub.ingress.sources import read_sources

    problems: list[str] = []
    config: MappingsConfig | None = None
    try:
        config = load_mappings(path)
    except MappingsError as exc:
        problems += exc.problems
    sources = config.sources if config is not None else None
    if sources is None and path.is_dir():
        found, source_problems = read_sources(path)
        sources = found if not source_problems else None
    syncs, sync_problems = read_syncs(path, sources) if path.is_dir() else ({}, [])
    problems += sync_problems
    if problems:
        raise MappingsError(problems)
    assert config is not None
    return config, syncs


def _summary(config: MappingsConfig, syncs: dict[str, SyncConfig] | None = None) -> str:
    return (
        f"{len(config.rules)} rules, {len(config.endpoints)} endpoints, "
        f"{len(config.sources)} sources" + (f", {len(syncs)} syncs" if syncs else "")
    )


DIR_ARG = click.argument(
    "directory", required=False, type=click.Path(path_type=Path, file_okay=False)
)


@click.group("mappings")
def mappings() -> None:
    """Check, apply and test the mappings directory (sources, endpoints, rules)."""


@mappings.command("check")
@DIR_ARG
def check(directory: Path | None) -> None:
    """Validate DIR: every problem with its file, line and path; exit 0 or 2."""
    path = directory or load_settings().mappings_dir
    config, syncs = load_all(path)
    click.echo(f"{path}: OK ({_summary(config, syncs)})")


@mappings.command("apply")
@DIR_ARG
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse to apply while an endpoint's env: reference is unset for some tenant.",
)
def apply(directory: Path | None, strict: bool) -> None:
    """Validate DIR and publish it to the database (all or nothing; same files: no change).

    Rules and endpoints reach the workers, sources the web processes, all at one config version;
    no running process reads DIR.

    Every endpoint `env:` reference that is unset in this environment, for any tenant, is named
    on stderr (deliveries to it would fail with that variable named); `--strict` refuses then.
    """
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from hub.core import audit
    from hub.core.crypto import Cipher
    from hub.core.db import check_database, create_db_engine
    from hub.core.models import Tenant
    from hub.core.queues import connect_redis
    from hub.core.secrets import SecretCache
    from hub.delivery.endpoints import unset_references
    from hub.mapping.apply import apply_mappings
    from hub.sync.schedule import apply_syncs

    settings = load_settings()
    config, syncs = load_all(directory or settings.mappings_dir)
    engine = create_db_engine(settings)
    redis = connect_redis(settings)
    try:
        check_database(engine)
        try:
            with engine.connect() as conn:
                slugs = list(conn.scalars(select(Tenant.slug).where(Tenant.active.is_(True))))
        except SQLAlchemyError:  # not migrated yet: apply_mappings says so
            slugs = []
        secrets = SecretCache(engine, Cipher.from_settings(settings), None)
        with contextlib.suppress(SQLAlchemyError):  # not migrated yet: apply_mappings says so
            secrets.load()
        unset = unset_references(config.endpoints, slugs, secrets=secrets)
        if unset and strict:
            raise HubError(
                "refused (--strict): unset environment variables\n  " + "\n  ".join(unset)
            )
        for line in unset:
            click.echo(f"hub: warning: {line}", err=True)
        result = apply_mappings(engine, redis, config)
        sync_changes = apply_syncs(engine, syncs)
        if result.changed:
            audit.record_now(
                engine, audit.cli_actor(), "mappings.apply", detail={"version": result.version}
            )
    finally:
        redis.close()
        engine.dispose()
    state = "applied" if result.changed else "no change"
    click.echo(
        f"{state}: version {result.version}; rules: {result.rules.summary()}; "
        f"endpoints: {result.endpoints.summary()}; sources: {result.sources.summary()}; "
        f"syncs: {sync_changes.summary()}"
    )
    for missing in sync_changes.unknown_tenants:
        click.echo(f"hub: warning: sync {missing}: no such tenant (skipped)", err=True)
    for variable in sync_changes.unset:
        click.echo(
            f"hub: warning: sync {variable} not set (not scheduled for that tenant)", err=True
        )
    if not result.redis_notified:
        click.echo(
            "hub: warning: Redis is unreachable; running processes notice the new version "
            "from the database within a few seconds",
            err=True,
        )


@mappings.command("test")
@DIR_ARG
def test(directory: Path | None) -> None:
    """Run every rule's examples; print a diff for each mismatch; exit 0 or 2."""
    from hub.mapping.examples import run_examples

    config, _ = _load(directory)
    results = run_examples(config)
    failed = [r for r in results if not r.ok]
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        click.echo(f"{mark} {result.rule}: {result.name}")
        for line in result.problems:
            click.echo(f"       {line}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise HubError(f"{len(failed)} example(s) failed")


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(mappings)


__all__ = ["MappingsError", "register"]

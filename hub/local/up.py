"""`hub up`: the whole hub as one process tree, embedded by default.

Order of things: data directory → embedded Redis (when HUB_REDIS_URL is unset) → migrate → apply
./mappings → demo tenant and key → children (web, worker(s), sweeper, and `hub consume --all` when
an amqp source is configured and its broker URL set) → wait. Ctrl-C (or SIGTERM)
stops the children in reverse order, each with SIGTERM and a grace period, then Redis.
A child that dies on its own stops the tree, with its name and exit code on stderr.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

import click
from sqlalchemy import Engine, select

from hub.core import envrefs, schema
from hub.core.db import check_database, create_db_engine, describe_url, session_factory
from hub.core.errors import SettingError
from hub.core.metrics import MULTIPROC_ENV, multiprocess_dir, reset_multiprocess_dir
from hub.core.models import KeyKind, Tenant
from hub.core.queues import check_redis, connect_redis, embedded_socket_path, redis_url
from hub.core.settings import Settings
from hub.ingress import apikeys
from hub.ingress.sources import SOURCES_FILE, load_sources
from hub.local import demomode
from hub.local.embedded import EmbeddedRedis
from hub.local.processes import HUB, Child, first_exited, stop_all, wait_http_ok

DEMO_TENANT = "demo"
HEALTH_TIMEOUT = 30.0

# Steps run after migrate, before the children start: (label, fn(settings, engine) -> summary).
# The mapping engine adds "apply ./mappings" here; demo mode adds its sinks.
BootStep = Callable[[Settings, Engine], str | None]
BOOT_STEPS: list[tuple[str, BootStep]] = []


def _say(message: str) -> None:
    click.echo(message, err=True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def demo_key(settings: Settings, engine: Engine) -> str:
    """The demo key saved in data_dir/demo.key while it is valid, else a new one."""
    path = settings.data_dir / "demo.key"
    Session = session_factory(engine)
    with Session.begin() as session:
        if path.exists():
            saved = path.read_text().strip()
            if apikeys.find_valid(session, saved) is not None:
                return saved
        created = apikeys.create_key(
            session,
            name="demo (hub up)",
            tenant_slug=DEMO_TENANT,
            kind=KeyKind.ADMIN,
            create_tenant=True,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(created.secret + "\n")
    path.chmod(0o600)
    return created.secret


def _child_env(settings: Settings, redis: str) -> dict[str, str]:
    env = dict(os.environ)
    env["HUB_DATABASE_URL"] = settings.effective_database_url
    env["HUB_REDIS_URL"] = redis
    env["HUB_DATA_DIR"] = str(settings.data_dir.resolve())
    env["HUB_MAPPINGS_DIR"] = str(settings.mappings_dir.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    if MULTIPROC_ENV not in env:  # /metrics adds up every child's counters; start from zero
        env[MULTIPROC_ENV] = str(reset_multiprocess_dir(multiprocess_dir(settings)))
    if "HUB_LOG_FORMAT" not in env and sys.stderr.isatty():
        env["HUB_LOG_FORMAT"] = "text"  # a person is watching; JSON stays the default elsewhere
    return env


def amqp_sources(settings: Settings, engine: Engine) -> list[str]:
    """The amqp sources `hub consume --all` can start: broker URL set and tenant known."""
    if not (settings.mappings_dir / SOURCES_FILE).is_file():
        return []
    ready = []
    with engine.connect() as conn:
        slugs = set(conn.scalars(select(Tenant.slug)))
    for name, config in sorted(load_sources(settings.mappings_dir).items()):
        if config.amqp is None:
            continue
        if envrefs.resolve_optional(config.amqp.url) and config.amqp.tenant in slugs:
            ready.append(name)
        else:
            _say(f"hub: not consuming {name}: its amqp url is unset or its tenant unknown")
    return ready


def run_up(settings: Settings, worker_count: int = 1) -> int:
    """Run the tree until Ctrl-C or SIGTERM; returns the exit code."""
    if not _port_free(settings.host, settings.port):
        raise SettingError(
            "HUB_PORT", f"{settings.host}:{settings.port} is in use; choose another with --port"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded: EmbeddedRedis | None = None
    children: list[Child] = []
    demo_environ: dict[str, str | None] = {}
    try:
        if settings.embedded_redis:
            embedded = EmbeddedRedis(embedded_socket_path(settings), settings.data_dir).start()
        redis = connect_redis(settings)
        check_redis(redis, settings)
        redis.close()

        engine = create_db_engine(settings)
        check_database(engine)
        schema.upgrade(engine)
        notes = [f"database {describe_url(engine)} at schema {schema.current_revision(engine)}"]
        # demo mode: unset example endpoint variables point at the sink (before apply checks them)
        stand_in = demomode.plan(settings, os.environ)
        if stand_in is not None:
            demo_environ = stand_in.install(os.environ)
            notes.extend(stand_in.summary())
        for label, step in BOOT_STEPS:
            summary = step(settings, engine)
            notes.append(f"{label}: {summary}" if summary else label)
        key = demo_key(settings, engine)
        consumed = amqp_sources(settings, engine)
        engine.dispose()

        env = _child_env(settings, redis_url(settings))
        if stand_in is not None:  # first up, last down: it receives every demo delivery
            children.append(stand_in.child().start(stand_in.child_env(env)))
            wait_http_ok(stand_in.health_url, children, HEALTH_TIMEOUT)
        serve = [*HUB, "serve", "--host", settings.host, "--port", str(settings.port)]
        tree = [Child("web", serve)]
        for n in range(worker_count):
            tree.append(Child(f"worker-{n + 1}", [*HUB, "worker"]))
        tree.append(Child("sweeper", [*HUB, "sweeper"]))
        if consumed:  # amqp sources ready to read: one `hub consume --all` reads them all
            tree.append(Child("consume", [*HUB, "consume", "--all"]))
            notes.append(f"consuming RabbitMQ for source(s) {', '.join(consumed)}")
        for child in tree:
            children.append(child.start(env))

        base = f"http://{settings.host}:{settings.port}"
        wait_http_ok(base + "/health", children, HEALTH_TIMEOUT)
        _banner(settings, base, key, notes, children, stand_in)

        while not stopping:
            dead = first_exited(children)
            if dead is not None:
                _say(f"hub: {dead.name} exited with code {dead.exit_code()}; stopping the others")
                return 1
            time.sleep(0.2)
        _say("hub: stopping…")
        return 0
    finally:
        stop_all(children)
        if embedded is not None:
            embedded.stop()
        demomode.restore(os.environ, demo_environ)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopping:
            _say("hub: stopped")


def _demo_lines(stand_in: demomode.StandIn | None) -> list[str]:
    if stand_in is None:
        return []
    return [
        "  see seed 003's flows end to end (in another terminal):",
        "    hub demo",
        f"  what the target systems received ({demomode.LABEL}): {stand_in.base}/"
        "  or  hub sink --tail",
        "",
    ]


def _banner(
    settings: Settings,
    base: str,
    key: str,
    notes: list[str],
    kids: list[Child],
    stand_in: demomode.StandIn | None = None,
) -> None:
    mode = []
    mode.append("SQLite " + str(settings.sqlite_path) if settings.embedded_database else "database")
    mode.append("embedded Redis" if settings.embedded_redis else "Redis " + redis_url(settings))
    pids = ", ".join(f"{c.name} {c.pid}" for c in kids)
    body = '{"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"}'
    lines = [
        "",
        f"hub is up on {base}  ({'; '.join(mode)})",
        *[f"  {n}" for n in notes],
        f"  processes: {pids}",
        "",
        f"  demo tenant '{DEMO_TENANT}', API key (saved in {settings.data_dir / 'demo.key'}):",
        f"    {key}",
        "",
        "  try it:",
        f"    curl -s {base}/health",
        f"    curl -s -X POST {base}/webhooks/site -H 'X-API-Key: {key}' \\",
        f"         -H 'Content-Type: application/json' -d '{body}'",
        "",
        *_demo_lines(stand_in),
        "  Ctrl-C stops everything; the data stays for the next `hub up`.",
        "",
    ]
    click.echo("\n".join(lines))


from hub.mapping.boot import apply_at_boot  # noqa: E402 - steps register after BOOT_STEPS exists

BOOT_STEPS.append(("mappings", apply_at_boot))

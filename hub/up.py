"""`hub up`: the whole hub as one process tree, embedded by default.

Order of things: data directory → embedded Redis (when HUB_REDIS_URL is unset) → migrate → apply
./mappings → demo tenant and key → children (web, worker(s), sweeper) → wait. Ctrl-C (or SIGTERM)
stops the children in reverse order, each with SIGTERM and a grace period, then Redis.
A child that dies on its own stops the tree, with its name and exit code on stderr.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import click
import httpx

from hub import apikeys, schema
from hub.db import check_database, create_db_engine, describe_url, session_factory
from hub.embedded import EmbeddedRedis
from hub.errors import HubError, SettingError
from hub.models import KeyKind
from hub.queues import check_redis, connect_redis, embedded_socket_path, redis_url
from hub.settings import Settings

DEMO_TENANT = "demo"
GRACE_SECONDS = 10.0
HEALTH_TIMEOUT = 30.0

# Steps run after migrate, before the children start: (label, fn(settings, engine) -> summary).
# The mapping engine adds "apply ./mappings" here; demo mode adds its sinks.
BootStep = Callable[[Settings, object], str | None]
BOOT_STEPS: list[tuple[str, BootStep]] = []


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None)


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


def demo_key(settings: Settings, engine: object) -> str:
    """The demo key saved in data_dir/demo.key while it is valid, else a new one."""
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    path = settings.data_dir / "demo.key"
    Session = session_factory(engine)
    with Session.begin() as session:
        if path.exists():
            saved = path.read_text().strip()
            if apikeys.find_valid(session, saved) is not None:
                return saved
        created = apikeys.create_key(
            session, name="demo (hub up)", tenant_slug=DEMO_TENANT, kind=KeyKind.ADMIN
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
    if "HUB_LOG_FORMAT" not in env and sys.stderr.isatty():
        env["HUB_LOG_FORMAT"] = "text"  # a person is watching; JSON stays the default elsewhere
    return env


def _wait_healthy(url: str, children: list[Child]) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                raise HubError(f"{child.name} exited with code {child.process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise HubError(f"the web server did not answer {url} within {HEALTH_TIMEOUT:.0f}s")


def _stop_children(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for child in reversed(children):
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"hub: {child.name} did not stop within {GRACE_SECONDS:.0f}s; killing it")
            child.process.kill()
            child.process.wait()


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
        for label, step in BOOT_STEPS:
            summary = step(settings, engine)
            notes.append(f"{label}: {summary}" if summary else label)
        key = demo_key(settings, engine)
        engine.dispose()

        exe = [sys.executable, "-m", "hub"]
        children.append(
            Child("web", [*exe, "serve", "--host", settings.host, "--port", str(settings.port)])
        )
        for n in range(worker_count):
            children.append(Child(f"worker-{n + 1}", [*exe, "worker"]))
        children.append(Child("sweeper", [*exe, "sweeper"]))
        env = _child_env(settings, redis_url(settings))
        for child in children:
            child.process = subprocess.Popen(
                child.args, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )

        base = f"http://{settings.host}:{settings.port}"
        _wait_healthy(base + "/health", children)
        _banner(settings, base, key, notes, children)

        while not stopping:
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    _say(f"hub: {child.name} exited with code {code}; stopping the others")
                    return 1
            time.sleep(0.2)
        _say("hub: stopping…")
        return 0
    finally:
        _stop_children(children)
        if embedded is not None:
            embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopping:
            _say("hub: stopped")


def _banner(settings: Settings, base: str, key: str, notes: list[str], kids: list[Child]) -> None:
    mode = []
    mode.append("SQLite " + str(settings.sqlite_path) if settings.embedded_database else "database")
    mode.append("embedded Redis" if settings.embedded_redis else "Redis " + redis_url(settings))
    pids = ", ".join(f"{c.name} {c.process.pid}" for c in kids if c.process is not None)
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
        "  Ctrl-C stops everything; the data stays for the next `hub up`.",
        "",
    ]
    click.echo("\n".join(lines))

"""The shell contract: clear one-line errors with exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, inspect

from hub.cli import cli
from hub.core import schema
from hub.local.processes import free_port as _closed_port


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_migrate_brings_a_new_database_to_head(tmp_path: Path) -> None:
    code, out, err = run(["migrate"], env={"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert code == 0, err
    assert f"schema empty -> {schema.head_revision()}" in out


def test_migrate_on_a_migrated_database_changes_nothing(database_url: str, engine: Engine) -> None:
    code, out, _ = run(["migrate"], env={"HUB_DATABASE_URL": database_url})
    assert code == 0
    assert f"{schema.head_revision()} -> {schema.head_revision()}" in out
    assert "integration_events" in inspect(engine).get_table_names()


def test_migrate_down_needs_a_revision(tmp_path: Path) -> None:
    code, _, err = run(
        ["migrate", "--down"], env={"HUB_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    )
    assert code == 2
    assert "--revision" in err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "HUB_DATABASE_URL: not a database URL"),
        ("oracle+nothing://x/y", "HUB_DATABASE_URL: unsupported database URL"),
    ],
)
def test_a_malformed_database_url_is_one_line_and_exit_2(url: str, expected: str) -> None:
    code, _, err = run(["migrate"], env={"HUB_DATABASE_URL": url})
    assert code == 2
    assert err.startswith("hub: error: " + expected)
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_an_unreachable_database_names_the_setting() -> None:
    port = _closed_port()
    code, _, err = run(
        ["migrate"], env={"HUB_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{port}/hub"}
    )
    assert code == 2
    assert err.startswith("hub: error: HUB_DATABASE_URL: cannot connect")
    assert len(err.strip().splitlines()) == 1


def test_an_unreachable_redis_names_the_setting(database_url: str) -> None:
    port = _closed_port()
    code, _, err = run(
        ["worker", "--burst"],
        env={"HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
    )
    assert code == 2
    assert err.startswith("hub: error: HUB_REDIS_URL: cannot connect")


def test_a_malformed_redis_url_names_the_setting() -> None:
    code, _, err = run(["worker", "--burst"], env={"HUB_REDIS_URL": "http://nope"})
    assert code == 2
    assert "HUB_REDIS_URL" in err


def test_unknown_options_print_usage_and_exit_2() -> None:
    code, _, err = run(["migrate", "--frobnicate"])
    assert code == 2
    assert "Usage:" in err and "--frobnicate" in err


def test_worker_burst_drains_and_exits(database_url: str, redis_url: str, redis: object) -> None:
    code, _, err = run(
        ["worker", "--burst", "low"],
        env={"HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": redis_url},
    )
    assert code == 0, err

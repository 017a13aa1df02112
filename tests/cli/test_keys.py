"""`hub keys`: the key alone on the last line, a table or JSON to list, revocation."""

from __future__ import annotations

from datetime import timedelta

import orjson
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.cli import cli
from hub.core.models import ApiKey, KeyKind, Tenant, utcnow
from hub.ingress.apikeys import find_valid, hash_key


def run(args: list[str], database_url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["keys", *args], env={"HUB_DATABASE_URL": database_url}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def create_tenant(slug: str, database_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["tenants", "create", slug], env={"HUB_DATABASE_URL": database_url}
    )
    assert result.exit_code == 0, result.stderr


def test_create_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash(
    database_url: str, engine: Engine
) -> None:
    create_tenant("clinic-1", database_url)
    code, out, err = run(["create", "--tenant", "clinic-1", "--name", "site"], database_url)
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("hub_") and " " not in key
    with Session(engine) as session:
        row = find_valid(session, key)
        assert row is not None and row.kind == KeyKind.INGEST and row.sources is None
        assert row.key_hash == hash_key(key) and key not in {row.key_hash, row.prefix}
        assert session.scalar(select(Tenant.slug).where(Tenant.id == row.tenant_id)) == "clinic-1"


def test_create_for_an_unknown_tenant_says_how_to_create_it_and_stores_nothing(
    database_url: str, engine: Engine
) -> None:
    create_tenant("clinic-1", database_url)
    code, out, err = run(["create", "--tenant", "clinic-2", "--name", "site"], database_url)
    assert code == 2 and out == ""
    assert err.startswith("hub: error: no tenant 'clinic-2' (did you mean 'clinic-1'?)")
    assert "hub tenants create clinic-2" in err and "--create-tenant" in err
    assert len(err.strip().splitlines()) == 1
    with Session(engine) as session:
        assert session.scalar(select(ApiKey.id)) is None
        assert list(session.scalars(select(Tenant.slug))) == ["clinic-1"]


def test_create_tenant_flag_keeps_the_old_behaviour_for_scripts(
    database_url: str, engine: Engine
) -> None:
    code, out, err = run(
        ["create", "--tenant", "clinic-9", "--create-tenant", "--name", "site"], database_url
    )
    assert code == 0, err
    with Session(engine) as session:
        row = find_valid(session, out.strip().splitlines()[-1])
        assert row is not None
        assert session.scalar(select(Tenant.slug).where(Tenant.id == row.tenant_id)) == "clinic-9"


def test_create_with_options_as_json(database_url: str, engine: Engine) -> None:
    create_tenant("clinic-2", database_url)
    code, out, err = run(
        [
            "create", "--tenant", "clinic-2", "--name", "fin", "--admin",
            "--sources", "financeiro, site", "--expires", "90d", "--json",
        ],
        database_url,
    )  # fmt: skip
    assert code == 0, err
    created = orjson.loads(out.strip().splitlines()[-1])
    assert created["kind"] == "admin" and created["tenant"] == "clinic-2"
    assert created["sources"] == ["financeiro", "site"]
    with Session(engine) as session:
        row = find_valid(session, created["key"])
        assert row is not None and row.expires_at is not None
        assert timedelta(days=89) < row.expires_at - utcnow() <= timedelta(days=90)


def test_operator_keys_have_no_tenant(database_url: str, engine: Engine) -> None:
    code, out, _ = run(["create", "--operator", "--name", "ops"], database_url)
    assert code == 0
    with Session(engine) as session:
        row = find_valid(session, out.strip().splitlines()[-1])
        assert row is not None and row.kind == KeyKind.OPERATOR and row.tenant_id is None


def test_bad_options_are_one_line_errors_with_exit_2(database_url: str, engine: Engine) -> None:
    for args, expected in [
        (["create", "--name", "x"], "--tenant"),
        (["create", "--operator", "--tenant", "a", "--name", "x"], "operator"),
        (["create", "--tenant", "Bad Slug", "--name", "x"], "slug"),
        (["create", "--tenant", "a", "--name", "x", "--expires", "soon"], "--expires"),
        (["create", "--tenant", "a", "--name", "x", "--sources", ","], "--sources"),
        (["create", "--tenant", "a", "--name", "x", "--admin", "--operator"], "--admin"),
        (["revoke", "999"], "999"),
    ]:
        code, out, err = run(args, database_url)
        assert code == 2, args
        assert err.startswith("hub: error: ") and expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    with Session(engine) as session:
        assert session.scalar(select(ApiKey.id)) is None  # nothing stored


def test_list_shows_every_key_without_the_secret(database_url: str, engine: Engine) -> None:
    create_tenant("clinic-1", database_url)
    _, out1, _ = run(["create", "--tenant", "clinic-1", "--name", "site"], database_url)
    _, out2, _ = run(["create", "--operator", "--name", "ops"], database_url)
    secret = out1.strip().splitlines()[-1]
    code, table, _ = run(["list"], database_url)
    assert code == 0
    header, *lines = table.strip().splitlines()
    assert header.split()[:5] == ["ID", "TENANT", "NAME", "KIND", "PREFIX"]
    assert len(lines) == 2 and "clinic-1" in lines[0] and "operator" in lines[1]
    assert secret not in table
    code, listed, _ = run(["list", "--json"], database_url)
    rows = orjson.loads(listed)
    assert [r["kind"] for r in rows] == ["ingest", "operator"]
    assert set(rows[0]) == {
        "id", "tenant", "name", "kind", "prefix", "sources",
        "expires_at", "revoked_at", "last_used_at",
    }  # fmt: skip
    assert secret.startswith(f"hub_{rows[0]['prefix']}_")


def test_revoke_makes_the_key_invalid(database_url: str, engine: Engine) -> None:
    create_tenant("clinic-1", database_url)
    _, out, _ = run(["create", "--tenant", "clinic-1", "--name", "site", "--json"], database_url)
    created = orjson.loads(out)
    code, said, _ = run(["revoke", str(created["id"])], database_url)
    assert code == 0 and f"revoked key {created['id']}" in said
    with Session(engine) as session:
        assert find_valid(session, created["key"]) is None
    _, listed, _ = run(["list", "--json"], database_url)
    assert orjson.loads(listed)[0]["revoked_at"] is not None

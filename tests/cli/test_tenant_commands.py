"""`hub tenants`: onboarding to offboarding from the shell; bad input exits 2, changes nothing."""

from __future__ import annotations

import orjson
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hub.cli import cli
from hub.core.models import ApiKey, IntegrationEvent, RateLimit, Tenant, utcnow


def run(args: list[str], database_url: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["tenants", *args], env={"HUB_DATABASE_URL": database_url}, input=stdin
    )
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2 and err.startswith("hub: error: "), err
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err


def test_onboard_list_show_rename_and_settings(database_url: str, engine: Engine) -> None:
    code, out, err = run(["create", "clinic-1", "--name", "Clínica Um"], database_url)
    assert code == 0, err
    assert "CLINIC_1_" in out and "hub keys create --tenant clinic-1" in out
    run(["create", "clinic-2", "--timezone", "America/Manaus", "--locale", "en-US"], database_url)
    keyed = CliRunner().invoke(
        cli,
        ["keys", "create", "--tenant", "clinic-1", "--name", "site"],
        env={"HUB_DATABASE_URL": database_url},
    )
    assert keyed.exit_code == 0, keyed.stderr

    code, table, _ = run(["list"], database_url)
    header, *lines = table.strip().splitlines()
    assert header.split()[:4] == ["SLUG", "NAME", "ACTIVE", "KEYS"]
    assert lines[0].split()[0] == "clinic-1" and "America/Manaus" in lines[1]
    rows = orjson.loads(run(["list", "--json"], database_url)[1])
    assert [(r["slug"], r["keys"], r["locale"]) for r in rows] == [
        ("clinic-1", 1, "pt-BR"),
        ("clinic-2", 0, "en-US"),
    ]

    assert run(["rename", "clinic-1", "Clínica Sorriso"], database_url)[0] == 0
    assert run(["settings", "clinic-1", "--timezone", "America/Recife"], database_url)[0] == 0
    code, shown, _ = run(["show", "clinic-1"], database_url)
    assert code == 0 and "Clínica Sorriso" in shown and "America/Recife" in shown
    assert "site" in shown and "limits      none" in shown
    detail = orjson.loads(run(["show", "clinic-1", "--json"], database_url)[1])
    assert detail["timezone"] == "America/Recife" and detail["key_list"][0]["name"] == "site"


def test_deactivate_and_activate(database_url: str, engine: Engine) -> None:
    run(["create", "clinic-1"], database_url)
    code, out, _ = run(["deactivate", "clinic-1"], database_url)
    assert code == 0 and "refused within seconds" in out
    with Session(engine) as session:
        assert session.scalar(select(Tenant.active)) is False
    code, out, _ = run(["activate", "clinic-1"], database_url)
    assert code == 0 and "activated" in out
    with Session(engine) as session:
        assert session.scalar(select(Tenant.active)) is True


def test_limits_set_list_unset(database_url: str, engine: Engine) -> None:
    run(["create", "clinic-1"], database_url)
    code, out, err = run(["limits", "set", "clinic-1", "600/min", "--source", "site"], database_url)
    assert code == 0 and "600/minute for source site" in out, err
    assert run(["limits", "set", "clinic-1", "50/s"], database_url)[0] == 0
    listed = orjson.loads(run(["limits", "list", "clinic-1", "--json"], database_url)[1])
    assert listed == [
        {"source": "*", "limit": "50/second"},
        {"source": "site", "limit": "600/minute"},
    ]
    code, out, _ = run(["limits", "unset", "clinic-1", "--source", "site"], database_url)
    assert code == 0 and "removed" in out
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(RateLimit)) == 1


def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    database_url: str, engine: Engine
) -> None:
    run(["create", "clinic-1"], database_url)
    cases = [
        (["create", "Clinic_2"], ["lower-case letters, digits and '-'"]),
        (["create", "clinic-1"], ["already exists"]),
        (["create", "clinic-2", "--timezone", "Sao Paulo"], ["IANA", "America/Sao_Paulo"]),
        (["create", "clinic-2", "--locale", "br"], ["pt-BR"]),
        (["show", "clinic1"], ["no tenant 'clinic1'", "did you mean 'clinic-1'"]),
        (["deactivate", "clinik-1"], ["did you mean 'clinic-1'"]),
        (["rename", "clinic-1", " "], ["blank"]),
        (["settings", "clinic-1"], ["--timezone"]),
        (["limits", "set", "clinic-1", "600 per minute"], ["600/min, 10/s, 1000/hour"]),
        (["limits", "set", "clinic-1", "0/min"], ["600/min"]),
        (["limits", "set", "clinic9", "600/min"], ["no tenant 'clinic9'"]),
        (["delete", "clinic-9", "--dry-run"], ["did you mean 'clinic-1'"]),
    ]
    for args, expected in cases:
        code, _, err = run(args, database_url)
        one_line_error(code, err, *expected)
    with Session(engine) as session:
        tenants = session.scalars(select(Tenant)).all()
        assert [(t.slug, t.name, t.active, t.timezone) for t in tenants] == [
            ("clinic-1", "clinic-1", True, "America/Sao_Paulo")
        ]
        assert session.scalar(select(func.count()).select_from(RateLimit)) == 0


def _with_an_event(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        tenant = session.scalars(select(Tenant)).one()
        session.add(
            IntegrationEvent(
                id="evt_01JTEST0000000000000000000",
                tenant_id=tenant.id,
                source="site",
                external_id="x",
                event_type="lead.created",
                created_at=utcnow(),
            )
        )


def test_delete_needs_erase_and_the_typed_slug(database_url: str, engine: Engine) -> None:
    run(["create", "clinic-1"], database_url)
    _with_an_event(engine)

    code, out, _ = run(["delete", "clinic-1", "--dry-run"], database_url)
    assert code == 0 and "would delete" in out and "1 events" in out
    code, out, err = run(["delete", "clinic-1"], database_url)
    one_line_error(code, err, "nothing changed", "--erase")
    code, _, err = run(["delete", "clinic-1", "--erase"], database_url, stdin="clinic-2\n")
    assert code == 2 and "confirmation did not match" in err
    code, _, err = run(["delete", "clinic-1", "--erase"], database_url, stdin="")
    assert code == 2 and "nothing changed" in err
    with Session(engine) as session:
        assert session.scalar(select(Tenant.active)) is True
        assert session.scalar(select(func.count()).select_from(IntegrationEvent)) == 1

    code, out, err = run(["delete", "clinic-1", "--erase"], database_url, stdin="clinic-1\n")
    assert code == 0, err
    assert "erased tenant clinic-1" in out and "1 events" in out and "erasing" in err
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0
        assert session.scalar(select(func.count()).select_from(IntegrationEvent)) == 0
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 0
    code, _, err = run(["show", "clinic-1"], database_url)
    one_line_error(code, err, "no tenant 'clinic-1'")
    code, _, err = run(["delete", "clinic-1", "--dry-run"], database_url)
    one_line_error(code, err, "was erased at")


def test_delete_confirm_for_scripts_prints_the_receipt_as_json(
    database_url: str, engine: Engine
) -> None:
    run(["create", "clinic-1"], database_url)
    _with_an_event(engine)
    code, out, err = run(
        ["delete", "clinic-1", "--erase", "--confirm", "clinic-1", "--json"], database_url
    )
    assert code == 0, err
    receipt = orjson.loads(out)
    assert receipt["tenant"] == "clinic-1" and receipt["deleted"]["events"] == 1

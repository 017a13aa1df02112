"""`hub mappings check|apply|test`: exit 0 or 2, every problem on stderr, apply all or nothing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hub.cli import cli
from hub.core.models import ConfigVersion, EventMapping, EventSource
from hub.core.queues import CONFIG_VERSION_KEY

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    return target


def break_it(directory: Path) -> None:
    rule = directory / "rules" / "lead_created.yaml"
    text = rule.read_text().replace("fn: phone_br, args: [$.phone], required", "fn: phone_bz, "
                                    "args: [$.phone], required")  # fmt: skip
    rule.write_text(text.replace("  - to: marketing", "  - to: marketting"))


def test_check_passes_on_the_shipped_mappings() -> None:
    code, out, err = run(["mappings", "check", str(SHIPPED)])
    assert code == 0, err
    assert "OK (4 rules, 8 endpoints, 7 sources, 2 syncs)" in out


def test_check_lists_every_problem_and_exits_2(mappings: Path) -> None:
    break_it(mappings)
    code, _, err = run(["mappings", "check", str(mappings)])
    assert code == 2
    assert err.startswith("hub: error: 5 problems in mappings:")  # the route key moved too
    assert "lead_created.yaml:" in err
    assert "routes[0].body.phone.fn: unknown function 'phone_bz' (did you mean 'phone_br'?)" in err
    assert "routes[2].to: unknown endpoint 'marketting' (did you mean 'marketing'?)" in err
    assert "Traceback" not in err


def test_apply_is_all_or_nothing_and_idempotent(
    mappings: Path, database_url: str, redis_url: str, engine: Engine, redis: Redis
) -> None:
    env = {"HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": redis_url}
    break_it(mappings)
    code, _, err = run(["mappings", "apply", str(mappings)], env)
    assert code == 2 and "unknown function 'phone_bz'" in err
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(EventMapping)) == 0
    assert redis.get(CONFIG_VERSION_KEY) is None

    code, out, err = run(["mappings", "apply", str(SHIPPED)], env)
    assert code == 0, err
    applied = re.match(r"applied: version (\d+); rules: 4 added, 0 updated, 0 removed", out)
    assert applied is not None, out
    version = applied.group(1)
    code, out, _ = run(["mappings", "apply", str(SHIPPED)], env)
    assert code == 0
    assert out.startswith(
        f"no change: version {version}; rules: 0 added, 0 updated, 0 removed, 4 unchanged"
    )
    assert redis.get(CONFIG_VERSION_KEY) == version.encode()


def test_a_bad_sources_yaml_is_refused_with_file_line_and_path_and_nothing_stored(
    mappings: Path, database_url: str, redis_url: str, engine: Engine, redis: Redis
) -> None:
    env = {"HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": redis_url}
    code, out, err = run(["mappings", "apply", str(mappings)], env)
    assert code == 0 and "sources: 7 added, 0 updated, 0 removed, 0 unchanged" in out, out + err

    def stored() -> tuple[object, ...]:
        with Session(engine) as session:
            rows = session.execute(
                select(EventSource.name, EventSource.version, EventSource.active)
            ).all()
            version = session.scalar(select(func.max(ConfigVersion.id)))
        return version, sorted(rows), redis.get(CONFIG_VERSION_KEY)

    before = stored()
    sources = mappings / "sources.yaml"
    lines = sources.read_text().splitlines()
    site = next(i for i, line in enumerate(lines) if line.startswith("  site:"))
    lines.insert(site + 1, "    allowed_ips: [the-office]")
    lines.insert(site + 1, "    critical: sometimes")
    sources.write_text("\n".join(lines) + "\n")
    code, _, err = run(["mappings", "apply", str(mappings)], env)
    assert code == 2, err
    assert f"sources.yaml:{site + 2} sources.site.critical:" in err, err
    assert f"sources.yaml:{site + 3} sources.site.allowed_ips:" in err, err
    assert stored() == before, "a refused apply changed the stored sources or the version"


def test_test_runs_every_example(mappings: Path) -> None:
    code, out, err = run(["mappings", "test", str(SHIPPED)])
    assert code == 0, out + err
    assert "ok   lead-created: a lead from the site form" in out
    assert out.strip().endswith("passed, 0 failed")

    rule = mappings / "rules" / "client_registered.yaml"
    rule.write_text(
        rule.read_text().replace("monthly_fee_cents: 125090", "monthly_fee_cents: 125000")
    )
    code, out, err = run(["mappings", "test", str(mappings)])
    assert code == 2
    assert "FAIL client-registered: a new client with e-mail and phone" in out
    assert "finance-setup.monthly_fee_cents: expected 125000, got 125090" in out
    assert "1 failed" in out
    assert err.strip() == "hub: error: 1 example(s) failed"


def test_dir_defaults_to_hub_mappings_dir(mappings: Path) -> None:
    code, out, _ = run(["mappings", "check"], {"HUB_MAPPINGS_DIR": str(mappings)})
    assert code == 0 and str(mappings) in out


def test_apply_on_an_unmigrated_database_says_so(tmp_path: Path, redis_url: str) -> None:
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "HUB_REDIS_URL": redis_url}
    code, _, err = run(["mappings", "apply", str(SHIPPED)], env)
    assert code == 2
    assert "is the schema migrated (`hub migrate`)?" in err
    assert "Traceback" not in err


def test_apply_names_unset_endpoint_variables_and_strict_refuses(
    database_url: str, redis_url: str, engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.core.models import Tenant

    with Session(engine) as session, session.begin():
        session.add(Tenant(slug="clinic-1", name="Clinic 1"))
    for name in ("CLINIC_1_CRM_URL", "CLINIC_1_CRM_TOKEN", "CLINIC_1_CRM_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    env = {"HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": redis_url}

    code, _, err = run(["mappings", "apply", "--strict", str(SHIPPED)], env)
    assert code == 2
    assert err.startswith("hub: error: refused (--strict): unset environment variables")
    assert "endpoint crm (url): CLINIC_1_CRM_URL not set" in err
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(EventMapping)) == 0

    code, out, err = run(["mappings", "apply", str(SHIPPED)], env)
    assert code == 0 and out.startswith("applied:")
    assert "hub: warning: endpoint crm (url): CLINIC_1_CRM_URL not set" in err

    monkeypatch.setenv("CLINIC_1_CRM_URL", "http://127.0.0.1:9/crm")
    _, _, err = run(["mappings", "apply", str(SHIPPED)], env)
    assert "CLINIC_1_CRM_URL" not in err

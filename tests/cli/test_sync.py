"""`hub sync list|run|history` and syncs.yaml in `hub mappings check|apply`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hub.cli import cli
from hub.core.models import IntegrationEvent, SyncJob, SyncRun
from hub.core.settings import Settings
from tests.sync.conftest import CrmApi, add_tenant, item

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture
def crm() -> Iterator[CrmApi]:
    server = CrmApi().start()
    yield server
    server.stop()


def run(args: list[str], settings: Settings, mappings: Path) -> tuple[int, str, str]:
    env = {
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_REDIS_URL": settings.redis_url or "",
        "HUB_DATA_DIR": str(settings.data_dir),
        "HUB_MAPPINGS_DIR": str(mappings),
        "CLINIC_1_CRM_API_URL": "",
    }
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def mappings_with(tmp_path: Path, crm: CrmApi) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    doc = yaml.safe_load((SHIPPED / "syncs.yaml").read_text())
    sync = doc["syncs"]["crm-clients"]
    sync["request"] = {"url": crm.url, "path": "/events"}
    sync["pagination"] = {"kind": "page", "param": "page"}
    sync["window"]["field"] = "$.updated_at"
    sync["window"].pop("initial")
    (target / "syncs.yaml").write_text(yaml.safe_dump({"syncs": {"crm-clients": sync}}))
    return target


def test_check_reports_syncs_problems_with_file_and_line(tmp_path: Path) -> None:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    text = (target / "syncs.yaml").read_text()
    text = text.replace("source: crm ", "source: crmm").replace('"0 * * * *"', "hourly")
    (target / "syncs.yaml").write_text(text)
    result = CliRunner().invoke(cli, ["mappings", "check", str(target)])
    assert result.exit_code == 2
    assert "syncs.yaml:8 syncs.crm-clients.source: unknown source 'crmm'" in result.stderr
    assert "syncs.yaml:27 syncs.site-leads.schedule: not a schedule: 'hourly'" in result.stderr

    ok = CliRunner().invoke(cli, ["mappings", "check", str(SHIPPED)])
    assert ok.exit_code == 0 and "2 syncs" in ok.stdout


def test_apply_then_run_list_and_history(
    tmp_path: Path, settings: Settings, engine: Engine, crm: CrmApi
) -> None:
    add_tenant(engine, "clinic-1")
    mappings = mappings_with(tmp_path, crm)
    crm.items = [item(n) for n in range(120)]

    code, out, err = run(["mappings", "apply", str(mappings)], settings, mappings)
    assert code == 0, err
    assert "syncs: 1 added, 0 updated, 0 removed, 0 unchanged" in out

    code, out, err = run(["sync", "run", "crm-clients", "--dry-run"], settings, mappings)
    assert code == 0, err
    assert "crm-clients/clinic-1: ok: 3 pages, 120 items, would create 120" in out
    with Session(engine) as session:  # a dry run writes nothing
        assert session.scalar(select(func.count()).select_from(IntegrationEvent)) == 0
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 0

    code, out, err = run(["sync", "run", "crm-clients", "--tenant", "clinic-1"], settings, mappings)
    assert code == 0, err
    assert "created 120 (missed webhooks), 0 duplicates" in out
    assert "mark 2026-11-01T13:59:00Z" in out

    code, out, _ = run(["sync", "list"], settings, mappings)
    assert code == 0 and "crm-clients" in out and "succeeded" in out
    code, out, _ = run(["sync", "history", "crm-clients"], settings, mappings)
    assert code == 0 and "manual" in out and "120" in out


def test_bad_input_is_one_line_and_exit_2_and_changes_nothing(
    tmp_path: Path, settings: Settings, engine: Engine, crm: CrmApi
) -> None:
    add_tenant(engine, "clinic-1")
    mappings = mappings_with(tmp_path, crm)
    assert run(["mappings", "apply", str(mappings)], settings, mappings)[0] == 0
    cases = [
        (["sync", "run", "crm-clientz"], "no sync 'crm-clientz' applied (known: crm-clients)"),
        (["sync", "run", "crm-clients", "--tenant", "nobody"], "does not run for tenant"),
        (["sync", "run", "crm-clients", "--since", "yesterday"], "--since: not a time"),
        (["sync", "history", "nope"], "no sync 'nope' applied"),
    ]
    for args, message in cases:
        code, out, err = run(args, settings, mappings)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 0
        assert session.scalar(select(SyncJob.status)) == "idle"
    assert crm.seen == []

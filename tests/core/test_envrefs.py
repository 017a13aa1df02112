from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.core.envrefs import MissingEnv, resolve, resolve_optional, valid_ref, variable_name


def test_plain_values_pass_through() -> None:
    assert resolve("https://crm.example/api", "clinic-1", {}) == "https://crm.example/api"


def test_tenant_placeholder_is_the_slug_upper_cased_with_underscores() -> None:
    env = {"CLINIC_1_CRM_URL": "http://127.0.0.1:9/crm"}
    assert variable_name("env:{TENANT}_CRM_URL", "clinic-1") == "CLINIC_1_CRM_URL"
    assert resolve("env:{TENANT}_CRM_URL", "clinic-1", env) == "http://127.0.0.1:9/crm"


def test_an_unset_variable_is_named_in_the_error() -> None:
    with pytest.raises(MissingEnv) as info:
        resolve("env:{TENANT}_CRM_TOKEN", "demo", {}, where="endpoint crm")
    assert info.value.variable == "DEMO_CRM_TOKEN"
    assert str(info.value) == "environment variable DEMO_CRM_TOKEN is not set (endpoint crm)"
    assert resolve_optional("env:{TENANT}_CRM_TOKEN", "demo", {}) is None


@pytest.mark.parametrize(
    ("ref", "ok"),
    [("env:A_B", True), ("env:{TENANT}_X", True), ("env:{OTHER}_X", False), ("env:a-b", False)],
)
def test_reference_syntax(ref: str, ok: bool) -> None:
    assert valid_ref(ref) is ok


def test_a_variable_may_come_from_the_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEMO_CRM_URL", raising=False)
    monkeypatch.setenv("DEMO_CRM_TOKEN", "from the environment")
    (tmp_path / ".env").write_text(
        "DEMO_CRM_URL=http://127.0.0.1:9/crm\nDEMO_CRM_TOKEN=from .env\n"
    )
    assert resolve("env:{TENANT}_CRM_URL", "demo") == "http://127.0.0.1:9/crm"
    assert resolve("env:{TENANT}_CRM_TOKEN", "demo") == "from the environment"  # env wins
    (tmp_path / ".env").write_text("OTHER=1\n")
    os.utime(tmp_path / ".env", (1, 1))  # a different mtime: the file is read again
    with pytest.raises(MissingEnv):
        resolve("env:{TENANT}_CRM_URL", "demo")


def test_a_secret_ref_reads_the_tenant_secret_then_its_variable() -> None:
    from hub.core.envrefs import MissingSecret, is_ref, valid_ref

    class Secrets:
        def get(self, tenant_slug: str, name: str) -> str | None:
            return {("clinic-1", "CRM_TOKEN"): "from-db"}.get((tenant_slug, name))

    env = {"CLINIC_2_CRM_TOKEN": "from-env"}
    assert is_ref("secret:CRM_TOKEN") and valid_ref("secret:CRM_TOKEN")
    assert not valid_ref("secret:{TENANT}_X") and not valid_ref("secret:")
    assert resolve("secret:CRM_TOKEN", "clinic-1", env, secrets=Secrets()) == "from-db"
    assert resolve("secret:CRM_TOKEN", "clinic-2", env, secrets=Secrets()) == "from-env"
    with pytest.raises(MissingSecret, match="hub secrets set --tenant clinic-3 CRM_TOKEN"):
        resolve("secret:CRM_TOKEN", "clinic-3", env, secrets=Secrets())

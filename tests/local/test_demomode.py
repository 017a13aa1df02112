"""Demo mode of `hub up`: only unset variables of unconfigured example endpoints go to the sink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.core.settings import Settings
from hub.delivery.endpoints import EndpointConfig
from hub.local import demomode

ENDPOINTS = """\
endpoints:
  crm:
    kind: webhook
    url: "env:{TENANT}_CRM_URL"
    headers: {Authorization: "env:{TENANT}_CRM_TOKEN"}
    signing_secret: "env:{TENANT}_CRM_SIGNING_SECRET"
  finance:
    kind: webhook
    url: "env:{TENANT}_FINANCE_URL"
    signing_secret: "env:{TENANT}_FINANCE_SIGNING_SECRET"
  whatsapp:
    kind: zapi
    url: "env:ZAPI_BASE_URL"
    instance: "env:{TENANT}_ZAPI_INSTANCE"
    token: "env:{TENANT}_ZAPI_TOKEN"
    client_token: "env:{TENANT}_ZAPI_CLIENT_TOKEN"
  email:
    kind: email
    host: "env:SMTP_HOST"
    port: "env:SMTP_PORT"
    username: "env:SMTP_USER"
    password: "env:SMTP_PASSWORD"
    starttls: true
    from_addr: "env:SMTP_FROM"
"""

SOURCES = """\
sources:
  site:
    event_type: {jsonpath: $.type}
  zapi:
    signature: {scheme: token, header: Client-Token, secrets: ["env:{TENANT}_ZAPI_WEBHOOK_TOKEN"]}
    event_type: {const: whatsapp.message.received}
  crm:
    signature:
      scheme: standard-webhooks
      secrets: ["env:{TENANT}_CRM_WEBHOOK_SECRET", "env:{TENANT}_CRM_WEBHOOK_SECRET_PREVIOUS"]
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "endpoints.yaml").write_text(ENDPOINTS)
    (mappings / "sources.yaml").write_text(SOURCES)
    return Settings(
        data_dir=tmp_path / ".hub",
        mappings_dir=mappings,
        _env_file=None,  # type: ignore[call-arg]
    )


def test_on_a_fresh_machine_every_example_endpoint_points_at_the_sink(settings: Settings) -> None:
    plan = demomode.plan(settings, {}, http_port=18100, smtp_port=12525)
    assert plan is not None
    secret = (settings.data_dir / "sink.secret").read_text().strip()
    assert plan.endpoints == ["crm", "finance", "whatsapp", "email"]
    env = plan.env
    assert env["DEMO_CRM_URL"] == "http://127.0.0.1:18100/crm"
    assert env["DEMO_FINANCE_URL"] == "http://127.0.0.1:18100/finance"
    assert env["DEMO_CRM_SIGNING_SECRET"] == env["DEMO_FINANCE_SIGNING_SECRET"] == secret
    assert env["ZAPI_BASE_URL"] == "http://127.0.0.1:18100/whatsapp"
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("127.0.0.1", "12525")
    assert env["SMTP_FROM"] == "hub-demo@example.com"
    assert env["SMTP_USER"].startswith("demo-") and env["SMTP_PASSWORD"].startswith("demo-")
    # STARTTLS: the sink offers it, and the tree trusts the sink's demo CA on top of the usual CAs
    assert plan.smtp_starttls and "--smtp-starttls" in plan.child().args
    bundle = Path(env["SSL_CERT_FILE"])
    assert bundle == (settings.data_dir / "sink-tls" / "bundle.pem").resolve()
    assert (settings.data_dir / "sink-tls" / "ca.pem").read_bytes() in bundle.read_bytes()
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") > 10
    assert env["DEMO_CRM_TOKEN"].startswith("demo-")
    # deliveries may reach the sink on loopback, on top of what the operator allowed
    assert env["HUB_EGRESS_ALLOW"].split(",")[-1] == "127.0.0.1"
    assert plan.zapi_client_token == env["DEMO_ZAPI_CLIENT_TOKEN"]
    assert plan.sink_secrets == [secret]
    # the sources' current secrets are generated (not the rotation ones) for `hub demo`
    assert plan.sources == ["zapi", "crm"]
    assert env["DEMO_CRM_WEBHOOK_SECRET"].startswith("whsec_")
    assert "DEMO_CRM_WEBHOOK_SECRET_PREVIOUS" not in env
    saved = demomode.demo_env(settings.data_dir)
    assert saved == {**env, "HUB_SINK_URL": "http://127.0.0.1:18100"}
    assert (settings.data_dir / "demo.env").stat().st_mode & 0o777 == 0o600


def test_generated_secrets_stay_the_same_from_one_hub_up_to_the_next(settings: Settings) -> None:
    first = demomode.plan(settings, {})
    second = demomode.plan(settings, {})
    assert first is not None and second is not None
    for name in ("DEMO_CRM_TOKEN", "DEMO_ZAPI_CLIENT_TOKEN", "DEMO_CRM_WEBHOOK_SECRET"):
        assert first.env[name] == second.env[name]


def test_a_configured_endpoint_is_left_alone_and_set_variables_are_never_changed(
    settings: Settings,
) -> None:
    environ = {
        "DEMO_CRM_URL": "https://crm.example.com/api",
        "DEMO_FINANCE_SIGNING_SECRET": "whsec_dXNlcidzIG93biBzZWNyZXQ=",
        "DEMO_ZAPI_WEBHOOK_TOKEN": "users-token",
    }
    plan = demomode.plan(settings, environ)
    assert plan is not None
    assert "crm" not in plan.endpoints
    assert not any(name.startswith("DEMO_CRM_") and "WEBHOOK" not in name for name in plan.env)
    assert "DEMO_FINANCE_SIGNING_SECRET" not in plan.env
    # finance goes to the sink with the user's own secret, so the sink verifies with it too
    assert plan.env["DEMO_FINANCE_URL"].endswith("/finance")
    assert "whsec_dXNlcidzIG93biBzZWNyZXQ=" in plan.sink_secrets
    assert "DEMO_ZAPI_WEBHOOK_TOKEN" not in plan.env and "zapi" not in plan.sources


def test_no_demo_mode_when_every_endpoint_is_configured(settings: Settings) -> None:
    environ = {
        "DEMO_CRM_URL": "https://crm.example.com",
        "DEMO_FINANCE_URL": "https://fin.example.com",
        "ZAPI_BASE_URL": "https://api.z-api.io",
        "SMTP_HOST": "smtp.example.com",
    }
    assert demomode.plan(settings, environ) is None
    assert not (settings.data_dir / "demo.env").exists()


def test_install_and_restore_leave_the_environment_as_it_was(settings: Settings) -> None:
    plan = demomode.plan(settings, {})
    assert plan is not None
    environ = {"PATH": os.environ.get("PATH", ""), "SMTP_HOST": ""}
    before = dict(environ)
    previous = plan.install(environ)
    assert environ["DEMO_CRM_URL"] == plan.env["DEMO_CRM_URL"]
    demomode.restore(environ, previous)
    assert environ == before


def test_the_sink_child_gets_its_secrets_in_the_environment_not_the_command_line(
    settings: Settings,
) -> None:
    plan = demomode.plan(settings, {})
    assert plan is not None
    child = plan.child()
    env = plan.child_env({"HUB_DATA_DIR": str(settings.data_dir)})
    assert not any(s in " ".join(child.args) for s in plan.sink_secrets)
    assert env["HUB_SINK_SECRETS"].split() == plan.sink_secrets
    assert env["HUB_SINK_ZAPI_CLIENT_TOKEN"] == plan.zapi_client_token


def test_an_endpoint_port_is_a_number_or_a_reference() -> None:
    base = {"kind": "email", "host": "env:SMTP_HOST", "from_addr": "env:SMTP_FROM"}
    assert EndpointConfig.model_validate({**base, "port": "env:SMTP_PORT"}).port == "env:SMTP_PORT"
    assert EndpointConfig.model_validate({**base, "port": 587}).port == 587
    assert EndpointConfig.model_validate({**base, "port": "2525"}).port == 2525
    with pytest.raises(ValidationError, match="port is a number or a reference"):
        EndpointConfig.model_validate({**base, "port": "smtp"})
    with pytest.raises(ValidationError, match="port is between 1 and 65535"):
        EndpointConfig.model_validate({**base, "port": 70000})


def test_a_free_port_is_never_one_this_tree_already_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until something binds a picked port the kernel may hand it out again: `hub up` had its
    sink's SMTP on the web's port once (CI: "address already in use")."""
    from types import SimpleNamespace

    from hub.local import processes

    picks = iter([8000, 8000, 41000])

    class Kernel:  # socket.socket, with the kernel's picks scripted
        def __enter__(self) -> Kernel:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(picks)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(processes, "socket", SimpleNamespace(socket=Kernel))
    assert processes.free_port(avoid=[8000]) == 41000

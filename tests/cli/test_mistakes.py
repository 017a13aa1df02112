"""Mistakes on the first-run path get help, not tracebacks: the file, the line, the closest name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.delivery.endpoints import read_endpoints

ROOT = Path(__file__).resolve().parents[2]

ENDPOINTS = """\
endpoints:
  crm:
    kind: webhook
    url: "env:{TENANT}_CRM_URL"
    sigining_secret: "env:{TENANT}_CRM_SIGNING_SECRET"
"""


def test_a_misspelt_key_names_the_line_and_the_closest_valid_key(tmp_path: Path) -> None:
    (tmp_path / "endpoints.yaml").write_text(ENDPOINTS)
    _, problems = read_endpoints(tmp_path)
    assert [p.split(" ", 1)[1] for p in problems] == [
        "endpoints.crm.sigining_secret: unknown key (did you mean 'signing_secret'?)"
    ]
    assert problems[0].startswith(f"{tmp_path / 'endpoints.yaml'}:5 ")


def test_a_key_far_from_any_valid_one_is_just_unknown(tmp_path: Path) -> None:
    (tmp_path / "endpoints.yaml").write_text(ENDPOINTS.replace("sigining_secret", "colour"))
    _, problems = read_endpoints(tmp_path)
    assert problems[0].endswith("endpoints.crm.colour: unknown key")


@pytest.mark.parametrize(
    ("typo", "fixed", "reported"),
    [
        ("soruces: [site, zapi]", "sources: [site, zapi]", "soruces: unknown key"
         " (did you mean 'sources'?)"),
        ("  - to: crn\n", "  - to: crm\n", "routes[0].to: unknown endpoint 'crn'"
         " (did you mean 'crm'?)"),
    ],
    ids=["key", "endpoint"],
)  # fmt: skip
def test_a_typo_in_a_rule_file_is_reported_by_hub_mappings_check(
    tmp_path: Path, typo: str, fixed: str, reported: str
) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    rule = tmp_path / "mappings" / "rules" / "lead_created.yaml"
    text = rule.read_text()
    assert fixed in text
    rule.write_text(text.replace(fixed, typo, 1))
    result = subprocess.run(
        [sys.executable, "-m", "hub", "mappings", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert any(
        line.startswith("mappings/rules/lead_created.yaml:") and line.endswith(reported)
        for line in result.stderr.splitlines()
    ), result.stderr


def test_an_unset_endpoint_variable_names_the_variable_and_the_endpoint() -> None:
    from hub.delivery import adapters
    from hub.delivery.endpoints import EndpointConfig
    from hub.delivery.senders import Senders

    config = EndpointConfig.model_validate(
        {"kind": "webhook", "url": "env:{TENANT}_CUIDADORES_URL"}
    )
    pool = Senders()
    try:
        outcome = adapters.WebhookAdapter(pool).send(
            adapters.OutgoingRequest(body={"a": 1}),
            adapters.Target("cuidadores", config, "demo"),
            adapters.DeliveryRef("dlv_1", 1),
        )
    finally:
        pool.close()
    assert outcome.verdict == adapters.Verdict.DEAD
    assert outcome.error == (
        "environment variable DEMO_CUIDADORES_URL is not set (endpoint cuidadores.url)"
    )


def test_the_smtp_port_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.core.errors import ConfigError
    from hub.delivery.adapters import Target, smtp_port
    from hub.delivery.endpoints import EndpointConfig

    config = EndpointConfig.model_validate(
        {"kind": "email", "host": "env:SMTP_HOST", "port": "env:SMTP_PORT", "from_addr": "a@b.c"}
    )
    target = Target("email", config, "demo")
    monkeypatch.setenv("SMTP_PORT", "2525")
    assert smtp_port(target) == 2525
    monkeypatch.setenv("SMTP_PORT", "smtp")
    with pytest.raises(ConfigError, match="endpoint email.port: 'smtp' is not a port number"):
        smtp_port(target)
    monkeypatch.delenv("SMTP_PORT")
    with pytest.raises(ConfigError, match=r"SMTP_PORT is not set \(endpoint email.port\)"):
        smtp_port(target)
    fixed = EndpointConfig.model_validate({**config.model_dump(), "port": None, "starttls": True})
    assert smtp_port(Target("email", fixed, "demo")) == 587

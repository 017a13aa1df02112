"""sources.yaml and endpoints.yaml: every problem reported at once, with file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.core.errors import MappingsError
from hub.core.models import EndpointKind
from hub.core.queues import QueueName
from hub.delivery.endpoints import load_endpoints, read_endpoints
from hub.ingress.sources import SignatureScheme, load_sources, read_sources


def write(dir: Path, name: str, text: str) -> Path:
    path = dir / name
    path.write_text(text)
    return path


def test_a_valid_sources_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.yaml",
        """\
sources:
  site:
    event_type: {jsonpath: $.type}
    event_id: {header: Idempotency-Key}
  zapi:
    critical: true
    signature: {scheme: token, header: Client-Token, secrets: ["env:{TENANT}_ZAPI_TOKEN"]}
    event_type: {const: whatsapp.message.received}
    max_body: 512KiB
    rate_limit: 600/min
    allowed_ips: [10.0.0.0/8, "::1"]
""",
    )
    sources = load_sources(tmp_path)
    assert sources["site"].effective_queue is QueueName.DEFAULT
    assert sources["zapi"].effective_queue is QueueName.HIGH
    assert sources["zapi"].signature is not None
    assert sources["zapi"].signature.scheme is SignatureScheme.TOKEN
    assert sources["zapi"].max_body == 512 * 1024
    assert sources["zapi"].rate_limit == "600/minute"
    assert len(sources["zapi"].allowed_ips) == 2


def test_every_problem_of_a_sources_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources.yaml",
        """\
sources:
  financeiro:
    queue: highh
    signature:
      scheme: standard-webhooks
      secrets: ["whsec_literal"]
    event_type: {jsonpath: $.type, header: X-Type}
    allowed_ips: [nope]
    colour: red
  Bad Name: {}
""",
    )
    with pytest.raises(MappingsError) as info:
        load_sources(tmp_path)
    problems = info.value.problems
    shown = str(path)
    assert any(p.startswith(f"{shown}:3 sources.financeiro.queue:") for p in problems)
    assert f"{shown}:6 sources.financeiro.signature.secrets: secrets are references" in "\n".join(
        problems
    )
    assert any(
        p.startswith(f"{shown}:7 sources.financeiro.event_type: give exactly one") for p in problems
    )
    assert any(p.startswith(f"{shown}:8 sources.financeiro.allowed_ips:") for p in problems)
    assert f"{shown}:9 sources.financeiro.colour: unknown key" in problems
    assert any(":10 sources.Bad Name: names are" in p for p in problems)
    assert len(problems) == 6


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "sources.yaml", "sources:\n  site: [1\n  other: 2\n")
    _, problems = read_sources(tmp_path)
    assert len(problems) == 1
    assert ":3: invalid YAML" in problems[0]


def test_a_missing_sources_file_is_a_problem(tmp_path: Path) -> None:
    _, problems = read_sources(tmp_path)
    assert "missing file" in problems[0]


def test_endpoints_parse_durations_and_keep_secrets_as_references(tmp_path: Path) -> None:
    write(
        tmp_path,
        "endpoints.yaml",
        """\
endpoints:
  crm:
    kind: webhook
    url: "env:{TENANT}_CRM_URL"
    headers: {Authorization: "env:{TENANT}_CRM_TOKEN"}
    signing_secret: "env:{TENANT}_CRM_SIGNING_SECRET"
    timeout: 10s
    retry: {max_attempts: 8, base: 10s, max_delay: 6h}
    circuit: {failures: 5, recovery: 30s}
    rate_limit: 10/s
  email:
    kind: email
    host: 127.0.0.1
    port: 2525
    from_addr: "hub@example.com"
""",
    )
    endpoints = load_endpoints(tmp_path)
    crm = endpoints["crm"]
    assert crm.kind is EndpointKind.WEBHOOK
    assert crm.timeout == 10.0
    assert crm.retry.max_delay == 6 * 3600
    assert crm.circuit.recovery == 30.0
    assert dict(crm.env_refs())["headers.Authorization"] == "env:{TENANT}_CRM_TOKEN"
    assert endpoints["email"].retry.max_attempts is None  # the kind's default applies


def test_endpoint_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "endpoints.yaml",
        """\
endpoints:
  crm:
    kind: webhook
    headers: {Authorization: "Bearer abc"}
  wa:
    kind: zapi
    url: http://127.0.0.1:1
    instance: i
    token: t
    timeout: forever
  mail:
    kind: fax
""",
    )
    _, problems = read_endpoints(tmp_path)
    text = "\n".join(problems)
    assert f"{path}:4 endpoints.crm.headers: header Authorization is a secret" in text
    assert f"{path}:10 endpoints.wa.timeout: not a duration" in text
    assert f"{path}:12 endpoints.mail.kind:" in text

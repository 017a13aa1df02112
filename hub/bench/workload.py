"""What the benchmarks send and where: a signed source, a fan-out rule, a realistic payload."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import orjson

from hub.bench.scratch import SECRET_VAR

TARGET_VAR = "BENCH_TARGET_URL"
SIGNATURE_HEADER = "X-Hub-Signature-256"
ROUTES_PER_EVENT = 2

SOURCES = f"""\
sources:
  bench:
    queue: default
    signature:
      scheme: hmac-sha256
      header: {SIGNATURE_HEADER}
      prefix: "sha256="
      secrets: ["env:{SECRET_VAR}"]
    event_type: {{jsonpath: $.type}}
    event_id: {{header: Idempotency-Key}}
"""

ENDPOINTS = f"""\
endpoints:
  target:
    kind: webhook
    url: "env:{TARGET_VAR}"
    timeout: 10s
"""

RULE = """\
rule: bench-fanout
sources: [bench]
events: ["lead.*"]
routes:
  - to: target
    path: /crm/leads
    body:
      name: $.lead.name
      email: $.lead.email
      phone: {fn: phone_br, args: [$.lead.phone]}
      city: $.lead.address.city
      origin: {const: bench}
  - to: target
    path: /marketing/campaigns
    body:
      campaign: $.utm.campaign
      source: $.utm.source
      lead: $.lead.name
"""


def write_mappings(directory: Path) -> None:
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    (directory / "sources.yaml").write_text(SOURCES)
    (directory / "endpoints.yaml").write_text(ENDPOINTS)
    (directory / "rules" / "bench.yaml").write_text(RULE)


def payload() -> bytes:
    """A lead from a website form, about 1 KB of JSON."""
    body = {
        "type": "lead.created",
        "lead": {
            "name": "Ana Souza",
            "email": "ana.souza@example.com",
            "phone": "(11) 91234-5678",
            "message": "Gostaria de saber mais sobre cuidadores para minha mãe. " * 6,
            "address": {"street": "Rua das Flores, 123", "city": "São Paulo", "state": "SP"},
        },
        "utm": {"source": "google", "medium": "cpc", "campaign": "cuidadores-sp"},
        "page": "https://example.com/contato",
        "submitted_at": "2026-11-27T12:00:00-03:00",
    }
    return orjson.dumps(body)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

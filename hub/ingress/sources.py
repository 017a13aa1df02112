"""Sources: who may send webhooks and how their events are recognised (mappings/sources.yaml).

```yaml
sources:
  site:
    queue: default
    event_type: {jsonpath: $.type}          # or {header: X-Event-Type} or {const: lead.created}
    event_id: {header: Idempotency-Key}      # absent: SHA-256 of the raw body
    signature: {scheme: hmac-sha256, header: X-Signature, secrets: ["env:SITE_SECRET"]}
    allowed_ips: [10.0.0.0/8]
    personal: {cpf: [$.patient.cpf], phone: [$.patient.phone]}   # see hub.ingress.persons
    max_body: 512KiB
    rate_limit: 600/min
```
"""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator, model_validator

from hub.core import envrefs
from hub.core.errors import MappingsError
from hub.core.queues import QueueName
from hub.core.units import parse_duration, parse_rate, parse_size
from hub.core.yamlfile import ConfigModel, load_named_section

SOURCES_FILE = "sources.yaml"

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[str, BeforeValidator(parse_rate)]


class Extractor(ConfigModel):
    """Where a value comes from: exactly one of a JSONPath into the body, a header, a constant."""

    jsonpath: str | None = None
    header: str | None = None
    const: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Extractor:
        given = [k for k in ("jsonpath", "header", "const") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of jsonpath, header, const")
        if self.jsonpath is not None:
            from jsonpath_ng.exceptions import JsonPathParserError
            from jsonpath_ng.ext import parse

            if not self.jsonpath.startswith("$"):
                raise ValueError(f"a JSONPath starts with '$': {self.jsonpath!r}")
            try:
                parse(self.jsonpath)
            except (JsonPathParserError, Exception) as exc:  # jsonpath-ng raises several kinds
                raise ValueError(f"invalid JSONPath {self.jsonpath!r}: {exc}") from exc
        return self


class SignatureScheme(enum.StrEnum):
    STANDARD_WEBHOOKS = "standard-webhooks"
    HMAC_SHA256 = "hmac-sha256"
    STRIPE = "stripe"
    TOKEN = "token"


class SignatureConfig(ConfigModel):
    scheme: SignatureScheme
    secrets: list[str] = Field(min_length=1)
    header: str | None = None  # hmac-sha256 and token: which header carries it
    encoding: str = "hex"  # hmac-sha256: hex | base64
    prefix: str | None = None  # hmac-sha256: e.g. "sha256=" (GitHub, Meta)
    tolerance: Duration = 300.0  # timestamped schemes: max age and max skew, seconds

    @field_validator("secrets")
    @classmethod
    def _refs_only(cls, secrets: list[str]) -> list[str]:
        for secret in secrets:
            if not envrefs.is_ref(secret) or not envrefs.valid_ref(secret):
                raise ValueError(
                    "secrets are references like 'secret:NAME', 'env:NAME' or "
                    "'env:{TENANT}_NAME', never values"
                )
        return secrets

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        if value not in ("hex", "base64"):
            raise ValueError("encoding is hex or base64")
        return value


class SourceConfig(ConfigModel):
    queue: QueueName | None = None  # default: high when critical, else default
    critical: bool = False
    event_type: Extractor = Extractor(jsonpath="$.type")
    event_id: Extractor | None = None
    signature: SignatureConfig | None = None
    allowed_ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list)
    max_body: Size | None = None
    rate_limit: Rate | None = None
    personal: dict[str, list[str]] = Field(default_factory=dict)  # hub.ingress.persons

    @field_validator("personal")
    @classmethod
    def _personal(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, paths in value.items():
            if kind not in ("cpf", "phone", "email"):
                raise ValueError(f"personal identifiers are cpf, phone and email, not {kind!r}")
            for path in paths:
                Extractor(jsonpath=path)  # the same JSONPath checks as event_type / event_id
        return value

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, list):
            out = []
            for item in value:
                try:
                    out.append(ipaddress.ip_network(str(item), strict=False))
                except ValueError as exc:
                    raise ValueError(f"not an IP network: {item!r}") from exc
            return out
        return value

    @property
    def effective_queue(self) -> QueueName:
        if self.queue is not None:
            return self.queue
        return QueueName.HIGH if self.critical else QueueName.DEFAULT


def load_sources(mappings_dir: Path) -> dict[str, SourceConfig]:
    """Every source of `mappings_dir/sources.yaml`; MappingsError lists every problem."""
    sources, problems = read_sources(mappings_dir)
    if problems:
        raise MappingsError(problems)
    return sources


def read_sources(mappings_dir: Path) -> tuple[dict[str, SourceConfig], list[str]]:
    """(sources, problems), for loaders that gather the problems of several files."""
    path = mappings_dir / SOURCES_FILE
    if not path.is_file():
        return {}, [f"{path}:1 (top): missing file (sources.yaml declares who may send)"]
    return load_named_section(path, "sources", SourceConfig)

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
    allow_query_key: false                   # true: ?api_key= is taken too (URL-only providers)
  meta:                                      # WhatsApp Cloud API (Meta) webhooks
    preset: whatsapp_cloud                   # event id and type from the message or status
    signature: {scheme: meta, secrets: ["env:{TENANT}_META_APP_SECRET"]}  # X-Hub-Signature-256
    verify_token: "env:{TENANT}_META_VERIFY_TOKEN"   # GET /webhooks/meta: Meta's handshake
    allow_query_key: true                    # Meta calls a URL: the key comes as ?api_key=
  agenda:                                    # a RabbitMQ queue, read by `hub consume agenda`
    amqp: {url: "env:AMQP_URL", queue: hub.agenda, tenant: clinica-a,
           dead_letter_exchange: hub.agenda.dlx, prefetch: 50}
    # event_type default {jsonpath: $.eventType}, event_id default {jsonpath: $.eventId}
```
An amqp source is not an HTTP source: POST /webhooks/agenda answers 404.
"""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path
from typing import Annotated, Literal

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
    META = "meta"  # Meta (WhatsApp Cloud, Messenger): X-Hub-Signature-256 "sha256=<hex>"


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


class AmqpSourceConfig(ConfigModel):
    url: str  # amqp://user:password@host:port/vhost, an env: reference
    queue: str = Field(min_length=1, max_length=255)
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")  # whose events these are
    dead_letter_exchange: str = Field(min_length=1, max_length=255)  # poison goes here
    prefetch: int = Field(default=50, ge=1, le=1000)  # unacked messages in hand at most

    @field_validator("url")
    @classmethod
    def _url_ref(cls, value: str) -> str:
        if not (envrefs.is_ref(value) and envrefs.valid_ref(value)):
            raise ValueError("url carries the broker's password: write a reference like env:NAME")
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
    allow_query_key: bool = False  # ?api_key= accepted: only for providers that take just a URL
    preset: Literal["whatsapp_cloud"] | None = None
    verify_token: str | None = None  # answers GET /webhooks/{source} (Meta's handshake)
    amqp: AmqpSourceConfig | None = None  # read from a RabbitMQ queue by `hub consume`

    @field_validator("verify_token")
    @classmethod
    def _verify_token_ref(cls, value: str | None) -> str | None:
        if value is not None and not (envrefs.is_ref(value) and envrefs.valid_ref(value)):
            raise ValueError("verify_token is a secret: write a reference like 'env:NAME'")
        return value

    @model_validator(mode="after")
    def _preset(self) -> SourceConfig:
        if self.preset == "whatsapp_cloud":
            if self.signature is None:
                raise ValueError(
                    "a whatsapp_cloud source needs signature: {scheme: meta, secrets: [...]} "
                    "(the app secret)"
                )
            if self.verify_token is None:
                raise ValueError("a whatsapp_cloud source needs verify_token (Meta's handshake)")
        if self.amqp is not None and (self.signature or self.verify_token or self.preset):
            raise ValueError("an amqp source takes no signature, verify_token or preset")
        return self

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
    def effective_event_type(self) -> Extractor:
        if self.amqp is not None and "event_type" not in self.model_fields_set:
            return Extractor(jsonpath="$.eventType")
        return self.event_type

    @property
    def effective_event_id(self) -> Extractor | None:
        if self.amqp is not None and self.event_id is None:
            return Extractor(jsonpath="$.eventId")
        return self.event_id

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

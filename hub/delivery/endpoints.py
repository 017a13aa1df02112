"""Endpoints: where deliveries go (mappings/endpoints.yaml), resolved per tenant at send time.

```yaml
endpoints:
  crm:
    kind: webhook                 # webhook | zapi | email | whatsapp_cloud | amqp | google_calendar
    url: "env:{TENANT}_CRM_URL"
    headers: {Authorization: "env:{TENANT}_CRM_TOKEN"}
    signing_secret: "env:{TENANT}_CRM_SIGNING_SECRET"
    timeout: 10s
    retry: {max_attempts: 8, base: 10s, max_delay: 6h}
    circuit: {failures: 5, recovery: 30s}
    rate_limit: 10/s
    concurrency: 8                # sends in flight per worker process (default: from the above)
  whatsapp: {kind: zapi, url: "env:ZAPI_BASE_URL", instance: "env:{TENANT}_ZAPI_INSTANCE",
             token: "env:{TENANT}_ZAPI_TOKEN", client_token: "env:{TENANT}_ZAPI_CLIENT_TOKEN"}
  email: {kind: email, host: "env:SMTP_HOST", port: "env:SMTP_PORT", username: "env:SMTP_USER",
          password: "env:SMTP_PASSWORD", starttls: true, from_addr: "env:SMTP_FROM"}
  meta: {kind: whatsapp_cloud, phone_number_id: "env:{TENANT}_WA_PHONE_ID",
         token: "env:{TENANT}_WA_TOKEN"}           # url: Graph API base, api_version: v21.0
  broker: {kind: amqp, url: "env:AMQP_URL", exchange: clinic.events, declare: true}
  agenda: {kind: google_calendar, client_id: "env:{TENANT}_GCAL_CLIENT_ID",
           client_secret: "env:{TENANT}_GCAL_CLIENT_SECRET",
           refresh_token: "env:{TENANT}_GCAL_REFRESH_TOKEN", calendar_id: "env:{TENANT}_GCAL_ID"}
```
Secrets (signing_secret, header values, token, client_token, password, client_secret,
refresh_token, and an amqp URL, which carries the broker's password) must be `env:` references.
Durations are stored as seconds. `retry` fields left out take the kind's defaults (see
hub.delivery.retry).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from hub.core import envrefs
from hub.core.errors import MappingsError
from hub.core.models import EndpointKind
from hub.core.units import parse_duration, parse_rate
from hub.core.yamlfile import ConfigModel, load_named_section

ENDPOINTS_FILE = "endpoints.yaml"
GRAPH_API = "https://graph.facebook.com"
CALENDAR_API = "https://www.googleapis.com/calendar/v3"

Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[str, BeforeValidator(parse_rate)]


def _ref_only(value: str | None, what: str) -> str | None:
    if value is not None and not (envrefs.is_ref(value) and envrefs.valid_ref(value)):
        raise ValueError(
            f"{what} is a secret: write a reference like 'secret:NAME' or 'env:{{TENANT}}_NAME'"
        )
    return value


class RetryConfig(ConfigModel):
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    base: Duration | None = None  # exponential: base * 2**(attempt-1), capped at max_delay
    max_delay: Duration | None = None
    schedule: list[Duration] | None = None  # explicit delays before attempts 2, 3, …
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _one_shape(self) -> RetryConfig:
        if self.schedule is not None and self.base is not None:
            raise ValueError("give either schedule or base (with max_delay), not both")
        return self


class CircuitConfig(ConfigModel):
    failures: int = Field(default=5, ge=1)
    recovery: Duration = 30.0


class EndpointConfig(ConfigModel):
    kind: EndpointKind
    url: str | None = None  # webhook: base URL (route paths are appended); others: API base
    method: str = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    signing_secret: str | None = None
    timeout: Duration = 10.0
    retry: RetryConfig = RetryConfig()
    circuit: CircuitConfig = CircuitConfig()
    rate_limit: Rate | None = None
    concurrency: int | None = Field(default=None, ge=1, le=64)  # see hub.delivery.lanes
    # zapi
    instance: str | None = None
    token: str | None = None
    client_token: str | None = None
    # email
    host: str | None = None
    port: int | str | None = None  # a number, or a reference such as "env:SMTP_PORT"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    from_addr: str | None = None
    # whatsapp_cloud (url: the Graph API base; token: the bearer token)
    phone_number_id: str | None = None
    api_version: str = "v21.0"
    # amqp (url: amqp://user:password@host:port/vhost, an env: reference)
    exchange: str | None = None
    exchange_type: str = "topic"
    declare: bool = False  # declare the exchange (durable); else it must exist
    source_service: str = "hub"  # the envelope's sourceService
    # google_calendar (url: the Calendar API base; token_url: the OAuth2 token endpoint)
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    calendar_id: str | None = None
    token_url: str = "https://oauth2.googleapis.com/token"
    timezone: str = "America/Sao_Paulo"

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.upper()
        if method not in ("POST", "PUT", "PATCH", "DELETE", "GET"):
            raise ValueError("method is one of POST, PUT, PATCH, DELETE, GET")
        return method

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            if envrefs.is_ref(value) and envrefs.valid_ref(value):
                return value
            if not value.isdigit():
                raise ValueError("port is a number or a reference like 'env:SMTP_PORT'")
            value = int(value)
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("port is between 1 and 65535")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 300:
            raise ValueError("timeout is between 0 and 5 minutes")
        return value

    @field_validator("headers")
    @classmethod
    def _header_secrets(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name.lower() in ("authorization", "x-api-key", "client-token", "cookie"):
                _ref_only(value, f"header {name}")
        return headers

    @model_validator(mode="after")
    def _per_kind(self) -> EndpointConfig:
        _ref_only(self.signing_secret, "signing_secret")
        _ref_only(self.token, "token")
        _ref_only(self.client_token, "client_token")
        _ref_only(self.password, "password")
        _ref_only(self.client_secret, "client_secret")
        _ref_only(self.refresh_token, "refresh_token")
        if self.kind == EndpointKind.AMQP:
            _ref_only(self.url, "an amqp url (it carries the password)")
        required = {
            EndpointKind.WEBHOOK: ("url",),
            EndpointKind.ZAPI: ("url", "instance", "token"),
            EndpointKind.EMAIL: ("host", "from_addr"),
            EndpointKind.WHATSAPP_CLOUD: ("phone_number_id", "token"),
            EndpointKind.AMQP: ("url", "exchange"),
            EndpointKind.GOOGLE_CALENDAR: (
                "client_id",
                "client_secret",
                "refresh_token",
                "calendar_id",
            ),
        }[self.kind]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind.value} endpoint needs {', '.join(missing)}")
        if self.exchange_type not in ("topic", "direct", "fanout", "headers"):
            raise ValueError("exchange_type is one of topic, direct, fanout, headers")
        if self.kind == EndpointKind.GOOGLE_CALENDAR:
            check_timezone(self.timezone)
        return self

    def env_refs(self) -> list[tuple[str, str]]:
        """(field, reference) for every `env:` value, to check that a tenant has them all set."""
        out: list[tuple[str, str]] = []
        data: dict[str, Any] = self.model_dump(mode="json")
        for key, value in data.items():
            if isinstance(value, str) and envrefs.is_ref(value):
                out.append((key, value))
        for name, value in self.headers.items():
            if envrefs.is_ref(value):
                out.append((f"headers.{name}", value))
        return out


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone (America/Sao_Paulo), else ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name: America/Sao_Paulo)") from exc
    return name


def load_endpoints(mappings_dir: Path) -> dict[str, EndpointConfig]:
    """Every endpoint of `mappings_dir/endpoints.yaml`; MappingsError lists every problem."""
    endpoints, problems = read_endpoints(mappings_dir)
    if problems:
        raise MappingsError(problems)
    return endpoints


def read_endpoints(mappings_dir: Path) -> tuple[dict[str, EndpointConfig], list[str]]:
    """(endpoints, problems), for loaders that gather the problems of several files."""
    path = mappings_dir / ENDPOINTS_FILE
    if not path.is_file():
        return {}, [f"{path}:1 (top): missing file (endpoints.yaml declares the targets)"]
    return load_named_section(path, "endpoints", EndpointConfig)


def unset_references(
    endpoints: dict[str, EndpointConfig],
    tenant_slugs: list[str],
    environ: Mapping[str, str] | None = None,
    secrets: envrefs.SecretLookup | None = None,
) -> list[str]:
    """One line per reference that some tenant has unset, naming variable and endpoint
    (a `secret:` reference is set by the tenant's secret or by its fallback variable)."""
    env = envrefs.ENVIRONMENT if environ is None else environ
    missing: dict[str, list[str]] = {}
    for name, config in sorted(endpoints.items()):
        for field, ref in config.env_refs():
            if envrefs.is_secret_ref(ref):
                secret = ref[len(envrefs.SECRET_PREFIX) :]
                for tenant in tenant_slugs:
                    variable = envrefs.variable_name(ref, tenant)
                    if not (secrets and secrets.get(tenant, secret)) and not env.get(variable):
                        missing.setdefault(f"endpoint {name} ({field})", []).append(
                            f"secret {secret} of {tenant} (or {variable})"
                        )
                continue
            per_tenant = "{TENANT}" in ref
            for slug in tenant_slugs if per_tenant else [None]:
                variable = envrefs.variable_name(ref, slug)
                if not env.get(variable):
                    missing.setdefault(f"endpoint {name} ({field})", []).append(variable)
    return [f"{where}: {', '.join(sorted(set(v)))} not set" for where, v in missing.items()]

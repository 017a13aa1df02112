"""The shape of one rule file, `mappings/rules/<name>.yaml` (docs/architecture.md, configuration).

```yaml
rule: lead-created
description: a lead from the site or WhatsApp goes to the CRM, gets a reply and a campaign
sources: [site, zapi]
events: ["lead.created", "whatsapp.message.received"]   # topic patterns: * one word, # any
when: {exists: $.phone}                                  # optional, for the whole rule
routes:
  - to: crm                     # an endpoint of endpoints.yaml
    key: crm                    # optional: the route's name in deliveries (default: `to`;
                                #   several routes to one endpoint: to-1, to-2, …)
    queue: default              # default: notifications for zapi and email endpoints
    method: POST                # default: the endpoint's method
    path: /leads/{{ $.id }}     # appended to the endpoint's URL; placeholders are URL-quoted
    headers: {X-Origin: site}
    delay: 2h                   # optional: deliver later (kept in the database)
    when: {path: $.optin, equals: true}                  # optional, for this route
    body: {name: $.name, phone: {fn: phone_br, args: [$.phone]}}
  - to: broker                  # an amqp endpoint
    routing_key: "clinic.{{ $.kind }}"                   # default: the event type
  - to: agenda                  # a google_calendar endpoint
    operation: upsert           # upsert | cancel
    appointment_key: $.appointment.id                    # one calendar entry per key
    timezone: America/Sao_Paulo # for start/end without an offset (default: the endpoint's)
    body: {summary: $.title, start: $.starts_at, end: $.ends_at}
examples:
  - name: a lead from the site
    source: site                # default: the rule's first source
    event_type: lead.created    # default: what the source's event_type extractor gives
    input: {type: lead.created, name: Ana, phone: "(11) 91234-5678"}
    expect:                     # route key -> the body it sends, or null: the route must not fire
      crm: {name: Ana, phone: "+5511912345678"}
    error: null                 # or text the failure reason must contain
```
Only the shape is checked here; expressions, conditions and cross-references are checked when
the directory is compiled (config.py), so every problem is reported in one pass.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from hub.core.queues import QueueName
from hub.core.units import parse_duration
from hub.core.yamlfile import NAME_RE, ConfigModel
from hub.mapping.topics import pattern_problem

Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=NAME_RE)]
METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")


class RouteConfig(ConfigModel):
    to: Name
    key: Name | None = None
    queue: QueueName | None = None
    method: str | None = None
    path: str | None = None
    headers: dict[str, Any] = Field(default_factory=dict)
    delay: Duration | None = None
    when: dict[str, Any] | None = None
    body: Any = None
    # amqp endpoints
    routing_key: str | None = None
    # google_calendar endpoints
    operation: Literal["upsert", "cancel"] | None = None
    appointment_key: Any = None
    timezone: str | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in METHODS:
            raise ValueError(f"method is one of {', '.join(METHODS)}")
        return value.upper()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("a path starts with '/' and is appended to the endpoint's URL")
        return value


class ExampleConfig(ConfigModel):
    name: str | None = None
    source: str | None = None
    event_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    input: Any
    expect: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class RuleConfig(ConfigModel):
    rule: Name
    description: str | None = None
    sources: list[Name] = Field(min_length=1)
    events: list[str] = Field(min_length=1)
    when: dict[str, Any] | None = None
    routes: list[RouteConfig] = Field(min_length=1)
    examples: list[ExampleConfig] = Field(default_factory=list)

    @field_validator("events")
    @classmethod
    def _patterns(cls, events: list[str]) -> list[str]:
        for pattern in events:
            problem = pattern_problem(pattern)
            if problem is not None:
                raise ValueError(problem)
        return events

    def route_keys(self) -> list[str]:
        """Each route's key: `key` if given, else `to`; several routes to one endpoint without
        a key are `to-1`, `to-2`, … in order (stable when routes are added after them)."""
        counts: dict[str, int] = {}
        for route in self.routes:
            if route.key is None:  # a keyed route never renames the keyless ones
                counts[route.to] = counts.get(route.to, 0) + 1
        seen: dict[str, int] = {}
        keys = []
        for route in self.routes:
            if route.key is not None:
                keys.append(route.key)
            elif counts[route.to] == 1:
                keys.append(route.to)
            else:
                seen[route.to] = seen.get(route.to, 0) + 1
                keys.append(f"{route.to}-{seen[route.to]}")
        return keys

    def definition(self) -> dict[str, Any]:
        """What is stored in event_mappings.definition (and checksummed)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

"""Match an event against the rules and build the requests its routes would send.

A `RuleSet` is compiled once per config version and shared by every event of a process: the rules
that may apply to a (source, event type) pair are looked up once and cached, then each candidate's
condition is tested and each route's request built by its compiled closures. The same `evaluate`
serves the worker (routing.py), `POST /admin/simulate` and `hub mappings test`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.core.errors import TransformError
from hub.core.models import EndpointKind
from hub.core.queues import QueueName
from hub.core.tenants import TenantSettings
from hub.delivery.endpoints import check_timezone
from hub.mapping.conditions import Condition, Problems, compile_condition
from hub.mapping.expressions import as_text, compile_template, compile_value
from hub.mapping.functions import tenant_settings
from hub.mapping.paths import Getter
from hub.mapping.rules import RouteConfig, RuleConfig
from hub.mapping.topics import TopicMatcher, compile_topics


@dataclass(frozen=True)
class CompiledRoute:
    key: str
    endpoint: str
    queue: str
    method: str
    delay: float | None
    condition: Condition | None
    path: Getter | None
    headers: tuple[tuple[str, Getter], ...]
    body: Getter
    options: tuple[tuple[str, Getter | str], ...] = ()  # per kind: see route_options
    amqp: bool = False  # add the event's type (default routing key) and time to the options

    def request(
        self, payload: Any, event_type: str = "", occurred_at: str | None = None
    ) -> dict[str, Any]:
        """`{"method", "path", "headers", "body"[, "options"]}` as stored (encrypted) in the
        delivery; `options` carries what amqp and google_calendar adapters need besides."""
        out = {
            "method": self.method,
            "path": self.path(payload, payload) if self.path is not None else None,
            "headers": self._headers(payload),
            "body": self.body(payload, payload),
        }
        options = {
            name: value if isinstance(value, str) else value(payload, payload)
            for name, value in self.options
        }
        if self.amqp:
            options.setdefault("routing_key", event_type)
            options["event_type"] = event_type
            options["occurred_at"] = occurred_at
        if options:
            out["options"] = options
        return out

    def _headers(self, payload: Any) -> dict[str, str]:
        """Header values as text; a null value leaves the header out."""
        out = {}
        for name, get in self.headers:
            value = get(payload, payload)
            if value is not None:
                out[name] = value if isinstance(value, str) else as_text(value)
        return out


@dataclass(frozen=True)
class CompiledRule:
    name: str
    sources: frozenset[str]
    events: tuple[str, ...]
    matches_event: TopicMatcher
    condition: Condition | None
    routes: tuple[CompiledRoute, ...]

    def applies_to(self, source: str, event_type: str) -> bool:
        return source in self.sources and self.matches_event(event_type)


@dataclass(frozen=True)
class Planned:
    """One delivery an event would create."""

    rule: str
    route: str
    endpoint: str
    queue: str
    delay: float | None
    request: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    rule: str
    route: str | None  # None: the whole rule
    reason: str


@dataclass
class Evaluation:
    planned: list[Planned] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)  # rules whose source, type and `when` held
    skipped: list[Skipped] = field(default_factory=list)  # filled only with explain=True
    errors: list[str] = field(default_factory=list)  # "rule lead-created: routes[0].body…"


def default_queue(kind: EndpointKind | None) -> str:
    if kind in (EndpointKind.ZAPI, EndpointKind.EMAIL, EndpointKind.WHATSAPP_CLOUD):
        return QueueName.NOTIFICATIONS.value
    return QueueName.DEFAULT.value


def compile_rule(
    config: RuleConfig,
    endpoints: Mapping[str, tuple[EndpointKind, str]],
    problems: Problems,
) -> CompiledRule:
    """Compile a validated rule; `endpoints` maps names to (kind, method). Problems collect."""
    condition = None
    if config.when is not None:
        condition = compile_condition(config.when, ("when",), problems)
    routes = []
    for index, (route, key) in enumerate(zip(config.routes, config.route_keys(), strict=True)):
        routes.append(_compile_route(route, key, ("routes", index), endpoints, problems))
    return CompiledRule(
        name=config.rule,
        sources=frozenset(config.sources),
        events=tuple(config.events),
        matches_event=compile_topics(config.events),
        condition=condition,
        routes=tuple(routes),
    )


def _compile_route(
    route: RouteConfig,
    key: str,
    loc: tuple[str | int, ...],
    endpoints: Mapping[str, tuple[EndpointKind, str]],
    problems: Problems,
) -> CompiledRoute:
    kind, endpoint_method = endpoints.get(route.to, (None, "POST"))
    condition = None
    if route.when is not None:
        condition = compile_condition(route.when, (*loc, "when"), problems)
    path = None
    if route.path is not None:
        path = compile_template(route.path, (*loc, "path"), problems, url=True)
    headers = tuple(
        (name, compile_value(value, (*loc, "headers", name), problems))
        for name, value in route.headers.items()
    )
    return CompiledRoute(
        options=route_options(route, kind, loc, problems),
        amqp=kind == EndpointKind.AMQP,
        key=key,
        endpoint=route.to,
        queue=route.queue.value if route.queue is not None else default_queue(kind),
        method=route.method or endpoint_method,
        delay=route.delay,
        condition=condition,
        path=path,
        headers=headers,
        body=compile_value(route.body, (*loc, "body"), problems),
    )


def route_options(
    route: RouteConfig,
    kind: EndpointKind | None,
    loc: tuple[str | int, ...],
    problems: Problems,
) -> tuple[tuple[str, Getter | str], ...]:
    """The route's settings for its endpoint's kind; a setting the kind needs or does not take
    is a problem at the route."""
    given = {
        name: getattr(route, name)
        for name in ("routing_key", "operation", "appointment_key", "timezone")
        if getattr(route, name) is not None
    }
    takes: tuple[str, ...] = ()
    if kind == EndpointKind.AMQP:
        takes = ("routing_key",)
    elif kind == EndpointKind.GOOGLE_CALENDAR:
        takes = ("operation", "appointment_key", "timezone")
        for name in ("operation", "appointment_key"):
            if name not in given:
                problems.append(
                    ((*loc, "to"), f"a route to a google_calendar endpoint needs '{name}'")
                )
    for name in given:
        if kind is not None and name not in takes:
            problems.append(((*loc, name), f"'{name}' is not a setting of {kind.value} routes"))
    out: list[tuple[str, Getter | str]] = []
    if "routing_key" in given:
        out.append(
            ("routing_key", compile_template(given["routing_key"], (*loc, "routing_key"), problems))
        )
    if "operation" in given:
        out.append(("operation", given["operation"]))
    if "appointment_key" in given:
        out.append(
            (
                "appointment_key",
                compile_value(given["appointment_key"], (*loc, "appointment_key"), problems),
            )
        )
    if "timezone" in given:
        try:
            out.append(("timezone", check_timezone(given["timezone"])))
        except ValueError as exc:
            problems.append(((*loc, "timezone"), str(exc)))
    return tuple(out)


class RuleSet:
    """Compiled rules of one config version."""

    def __init__(self, rules: Sequence[CompiledRule], version: int = 0) -> None:
        self.rules = tuple(rules)
        self.version = version
        self.by_name = {rule.name: rule for rule in self.rules}
        self._candidates: dict[tuple[str, str], tuple[CompiledRule, ...]] = {}

    def candidates(self, source: str, event_type: str) -> tuple[CompiledRule, ...]:
        """The rules whose sources and event patterns admit this pair (cached)."""
        key = (source, event_type)
        found = self._candidates.get(key)
        if found is None:
            found = tuple(r for r in self.rules if r.applies_to(source, event_type))
            if len(self._candidates) < 10_000:  # event types are few; bound it all the same
                self._candidates[key] = found
        return found

    def evaluate(
        self,
        source: str,
        event_type: str,
        payload: Any,
        *,
        explain: bool = False,
        tenant: TenantSettings | None = None,
        occurred_at: str | None = None,
    ) -> Evaluation:
        """What this event would send. Transform failures are collected in `errors`. Date and
        money functions use `tenant`'s time zone and locale (default America/Sao_Paulo, pt-BR)."""
        with tenant_settings(tenant):
            return self._evaluate(source, event_type, payload, explain, occurred_at)

    def _evaluate(
        self, source: str, event_type: str, payload: Any, explain: bool, occurred_at: str | None
    ) -> Evaluation:
        out = Evaluation()
        if explain:
            for rule in self.rules:
                if source not in rule.sources:
                    reason = f"source '{source}' is not one of {sorted(rule.sources)}"
                    out.skipped.append(Skipped(rule.name, None, reason))
                elif not rule.matches_event(event_type):
                    reason = f"event type '{event_type}' matches none of {list(rule.events)}"
                    out.skipped.append(Skipped(rule.name, None, reason))
        for rule in self.candidates(source, event_type):
            if rule.condition is not None and not rule.condition.test(payload, payload):
                if explain:
                    reason = rule.condition.why_not(payload, payload) or "condition not met"
                    out.skipped.append(Skipped(rule.name, None, f"when: {reason}"))
                continue
            out.matched.append(rule.name)
            for route in rule.routes:
                if route.condition is not None and not route.condition.test(payload, payload):
                    if explain:
                        why = route.condition.why_not(payload, payload) or "condition not met"
                        out.skipped.append(Skipped(rule.name, route.key, f"when: {why}"))
                    continue
                try:
                    request = route.request(payload, event_type, occurred_at)
                except TransformError as exc:
                    out.errors.append(f"rule {rule.name}: {exc.message}")
                    continue
                out.planned.append(
                    Planned(rule.name, route.key, route.endpoint, route.queue, route.delay, request)
                )
        return out

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

    def request(self, payload: Any) -> dict[str, Any]:
        """`{"method", "path", "headers", "body"}` as stored (encrypted) in the delivery."""
        return {
            "method": self.method,
            "path": self.path(payload, payload) if self.path is not None else None,
            "headers": self._headers(payload),
            "body": self.body(payload, payload),
        }

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
    if kind in (EndpointKind.ZAPI, EndpointKind.EMAIL):
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
    ) -> Evaluation:
        """What this event would send. Transform failures are collected in `errors`. Date and
        money functions use `tenant`'s time zone and locale (default America/Sao_Paulo, pt-BR)."""
        with tenant_settings(tenant):
            return self._evaluate(source, event_type, payload, explain)

    def _evaluate(self, source: str, event_type: str, payload: Any, explain: bool) -> Evaluation:
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
                    request = route.request(payload)
                except TransformError as exc:
                    out.errors.append(f"rule {rule.name}: {exc.message}")
                    continue
                out.planned.append(
                    Planned(rule.name, route.key, route.endpoint, route.queue, route.delay, request)
                )
        return out

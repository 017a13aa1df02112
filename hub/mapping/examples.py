"""`hub mappings test`: every rule's `examples` run through the compiled rules.

An example names its input (and optionally its source, event type and headers) and what each route
must send (`null`: the route must not fire), or the text the failure reason must contain
(`error:`). Routes an example does not mention are not checked. A mismatch is reported as a list
of the differing fields, `expected … got …`, readable in a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.ingress.sources import SourceConfig
from hub.mapping.config import MappingsConfig
from hub.mapping.paths import PathError, compile_path
from hub.mapping.rules import ExampleConfig, RuleConfig


@dataclass
class ExampleResult:
    rule: str
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def event_type_of(example: ExampleConfig, rule: RuleConfig, source: SourceConfig | None) -> str:
    """The example's event type: given, else as its source would extract it, else the rule's."""
    if example.event_type is not None:
        return example.event_type
    if source is not None:
        extractor = source.event_type
        if extractor.const is not None:
            return extractor.const
        if extractor.jsonpath is not None:
            try:
                value = compile_path(extractor.jsonpath)(example.input, example.input)
            except PathError:
                value = None
            if isinstance(value, str):
                return value
        if extractor.header is not None:
            for name, value in example.headers.items():
                if name.lower() == extractor.header.lower():
                    return value
    plain = [p for p in rule.events if "*" not in p and "#" not in p]
    return plain[0] if plain else rule.events[0]


def run_examples(config: MappingsConfig) -> list[ExampleResult]:
    results = []
    for name, rule in config.rules.items():
        for index, example in enumerate(rule.examples):
            label = example.name or f"examples[{index}]"
            results.append(_run_one(config, rule, example, ExampleResult(name, label)))
    return results


def _run_one(
    config: MappingsConfig, rule: RuleConfig, example: ExampleConfig, result: ExampleResult
) -> ExampleResult:
    source_name = example.source or rule.sources[0]
    event_type = event_type_of(example, rule, config.sources.get(source_name))
    evaluation = config.ruleset.evaluate(source_name, event_type, example.input, explain=True)
    prefix = f"rule {rule.rule}: "
    errors = [e[len(prefix) :] for e in evaluation.errors if e.startswith(prefix)]
    if example.error is not None:
        if not any(example.error in e for e in errors):
            got = "; ".join(errors) if errors else "no error"
            result.problems.append(f"expected an error containing {example.error!r}, got: {got}")
        return result
    for error in errors:
        result.problems.append(f"failed: {error}")
    sent = {p.route: p.request["body"] for p in evaluation.planned if p.rule == rule.rule}
    reasons = {s.route: s.reason for s in evaluation.skipped if s.rule == rule.rule}
    for key, expected in example.expect.items():
        if expected is None:
            if key in sent:
                result.problems.append(f"{key}: expected no delivery, but it sends {sent[key]!r}")
            continue
        if key not in sent:
            why = reasons.get(key) or reasons.get(None) or "see the errors above"
            result.problems.append(f"{key}: expected a delivery, but none ({why})")
            continue
        result.problems.extend(f"{key}{line}" for line in diff(expected, sent[key]))
    return result


def diff(expected: Any, actual: Any, at: str = "") -> list[str]:
    """Each difference as `<path>: expected X, got Y` (empty when equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in expected:
            if key not in actual:
                out.append(f"{at}.{key}: missing (expected {expected[key]!r})")
            else:
                out.extend(diff(expected[key], actual[key], f"{at}.{key}"))
        for key in actual:
            if key not in expected:
                out.append(f"{at}.{key}: unexpected field, got {actual[key]!r}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        out = []
        for index, (e, a) in enumerate(zip(expected, actual, strict=False)):
            out.extend(diff(e, a, f"{at}[{index}]"))
        if len(expected) != len(actual):
            out.append(f"{at}: expected {len(expected)} items, got {len(actual)}")
        return out
    if _same(expected, actual):
        return []
    return [f"{at or ' (body)'}: expected {expected!r}, got {actual!r}"]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)

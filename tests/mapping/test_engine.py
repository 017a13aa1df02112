"""Matching and building: the seed 003 flows through the shipped rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.mapping.config import MappingsConfig, load_mappings
from hub.mapping.engine import RuleSet

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"

LEAD = {"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"}
SERVICE = {
    "event": "service.completed",
    "service": {"id": "S1", "status": "completed", "type": "visita", "billable": True,
                "completed_at": "2026-11-27T17:30:00Z", "amount": "200,00",
                "caregiver": {"name": "Rita"}},
    "client": {"id": "C1", "name": "Maria", "phone": "31 99876-5432"},
}  # fmt: skip


@pytest.fixture(scope="module")
def config() -> MappingsConfig:
    return load_mappings(SHIPPED)


@pytest.fixture(scope="module")
def rules(config: MappingsConfig) -> RuleSet:
    return config.ruleset


def test_a_site_lead_goes_to_crm_whatsapp_and_marketing(rules: RuleSet) -> None:
    result = rules.evaluate("site", "lead.created", LEAD)
    assert result.errors == []
    assert result.matched == ["lead-created"]
    by_route = {p.route: p for p in result.planned}
    assert set(by_route) == {"crm", "auto-reply", "marketing"}
    crm = by_route["crm"]
    assert (crm.endpoint, crm.queue, crm.delay) == ("crm", "default", None)
    assert crm.request["method"] == "POST"
    assert crm.request["path"] == "/leads"
    assert crm.request["body"]["phone"] == "+5511912345678"
    reply = by_route["auto-reply"]
    assert (reply.endpoint, reply.queue) == ("whatsapp", "notifications")
    assert reply.request["body"] == {
        "phone": "5511912345678",
        "message": "Olá, Ana! Recebemos seu contato e em breve um especialista da Carinho "
        "fala com você.",
    }


def test_a_completed_service_schedules_the_feedback_two_hours_later(rules: RuleSet) -> None:
    result = rules.evaluate("operacao", "service.visit.completed", SERVICE)
    by_route = {p.route: p for p in result.planned}
    assert set(by_route) == {"notify-client", "feedback-request", "invoice", "update-crm"}
    assert by_route["feedback-request"].delay == 7200
    assert by_route["notify-client"].delay is None
    update = by_route["update-crm"].request
    assert (update["method"], update["path"]) == ("PATCH", "/clients/C1")
    assert by_route["invoice"].request["body"]["total_cents"] == 20000


def test_path_placeholders_are_url_quoted(rules: RuleSet) -> None:
    payload = {**SERVICE, "client": {**SERVICE["client"], "id": "a/b c"}}  # type: ignore[dict-item]
    result = rules.evaluate("operacao", "service.completed", payload)
    update = next(p for p in result.planned if p.route == "update-crm")
    assert update.request["path"] == "/clients/a%2Fb%20c"


def test_other_sources_and_event_types_match_nothing(rules: RuleSet) -> None:
    assert rules.evaluate("financeiro", "payment.succeeded", {}).planned == []
    assert rules.evaluate("crm", "lead.created", LEAD).planned == []
    assert rules.evaluate("operacao", "service.visit.started", SERVICE).planned == []


def test_explain_says_why_each_rule_and_route_did_not_match(rules: RuleSet) -> None:
    payload = {**SERVICE, "service": {**SERVICE["service"], "billable": False}}  # type: ignore[dict-item]
    result = rules.evaluate("operacao", "service.completed", payload, explain=True)
    reasons = {(s.rule, s.route): s.reason for s in result.skipped}
    assert (
        reasons[("service-completed", "invoice")] == "when: expected $.service.billable equals True"
    )
    assert reasons[("lead-created", None)] == "source 'operacao' is not one of ['site', 'zapi']"
    assert reasons[("client-registered", None)] == "source 'operacao' is not one of ['crm']"
    off = rules.evaluate("operacao", "service.started", SERVICE, explain=True)
    assert ("service-completed", None) in {(s.rule, s.route) for s in off.skipped}
    assert "matches none of" in next(s.reason for s in off.skipped if s.rule == "service-completed")


def test_a_payload_that_does_not_fit_is_an_error_naming_rule_field_and_path(
    rules: RuleSet,
) -> None:
    result = rules.evaluate("site", "lead.created", {"type": "lead.created", "phone": "12"})
    assert result.errors == [
        "rule lead-created: routes[0].body.phone: phone_br: not a Brazilian phone number "
        "(2 digits)",
        "rule lead-created: routes[1].body.phone.args[0]: phone_br: not a Brazilian phone number "
        "(2 digits)",
        "rule lead-created: routes[2].body.lead.args[0]: phone_br: not a Brazilian phone number "
        "(2 digits)",
    ]
    missing = {**SERVICE, "client": {"name": "x", "phone": "31 99876-5432"}}
    result = rules.evaluate("operacao", "service.completed", missing)
    assert (
        "rule service-completed: routes[2].body.customer_id: required value is missing "
        "($.client.id)" in result.errors
    )


def test_a_payload_that_is_not_an_object_matches_safely(rules: RuleSet) -> None:
    for payload in ([1, 2], "text", None, 5):
        result = rules.evaluate("site", "lead.created", payload)
        assert result.planned == [] and result.errors == []


def test_candidates_are_cached_per_source_and_type(rules: RuleSet) -> None:
    first = rules.candidates("site", "lead.created")
    assert rules.candidates("site", "lead.created") is first
    assert [r.name for r in first] == ["lead-created"]


def test_route_headers_are_text_and_null_ones_are_left_out() -> None:
    from hub.core.models import EndpointKind
    from hub.mapping.conditions import Problems
    from hub.mapping.engine import compile_rule
    from hub.mapping.rules import RuleConfig

    rule = RuleConfig.model_validate(
        {
            "rule": "headers",
            "sources": ["site"],
            "events": ["#"],
            "routes": [
                {
                    "to": "crm",
                    "headers": {
                        "X-Id": "$.id",
                        "X-Flag": "$.flag",
                        "X-None": "$.nope",
                        "X-Tag": "lead-{{ $.id }}",
                    },
                }  # fmt: skip
            ],
        }
    )
    problems: Problems = []
    compiled = compile_rule(rule, {"crm": (EndpointKind.WEBHOOK, "PUT")}, problems)
    assert problems == []
    request = compiled.routes[0].request({"id": 42, "flag": True})
    assert request["headers"] == {"X-Id": "42", "X-Flag": "true", "X-Tag": "lead-42"}
    assert request["method"] == "PUT"  # the endpoint's method when the route names none
    assert compiled.routes[0].queue == "default"

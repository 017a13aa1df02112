"""Event-type patterns as in AMQP topic exchanges (seeds 002 and 004)."""

from __future__ import annotations

import pytest

from hub.mapping.topics import compile_topic, compile_topics, pattern_problem


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("lead.created", "lead.created", True),
        ("lead.created", "lead.updated", False),
        ("notification.email.*", "notification.email.order", True),
        ("notification.email.*", "notification.email", False),
        ("notification.email.*", "notification.email.order.confirmed", False),
        ("notification.*.order.*", "notification.sms.order.shipped", True),
        ("notification.*.order.*", "notification.sms.invoice.shipped", False),
        ("#", "anything.at.all", True),
        ("#", "one", True),
        ("service.#", "service", True),
        ("service.#", "service.visit.completed", True),
        ("service.#", "services.visit", False),
        ("#.completed", "service.visit.completed", True),
        ("#.completed", "completed", True),
        ("#.completed", "completed.not", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("lead.*", "lead.created", True),
        ("lead.*", "leads.created", False),
    ],
)
def test_topic_patterns(pattern: str, event_type: str, matches: bool) -> None:
    assert compile_topic(pattern)(event_type) is matches


def test_dots_are_literal_in_words() -> None:
    assert compile_topic("a.b")("axb") is False
    assert compile_topic("a.*")("a.b.c") is False


def test_any_of_several_patterns() -> None:
    match = compile_topics(["lead.created", "whatsapp.message.*"])
    assert match("whatsapp.message.received")
    assert match("lead.created")
    assert not match("client.registered")


@pytest.mark.parametrize("bad", ["", "lead.", "lead.cre*", "a..b", "a.#x"])
def test_malformed_patterns_are_reported(bad: str) -> None:
    assert pattern_problem(bad) is not None
    with pytest.raises(ValueError):
        compile_topic(bad)

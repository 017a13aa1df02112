from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from hub.core.models import EndpointKind
from hub.delivery.endpoints import RetryConfig
from hub.delivery.retry import (
    NOTIFICATION_DEFAULT,
    WEBHOOK_DEFAULT,
    RetryPolicy,
    is_retryable_status,
    next_delay,
    parse_retry_after,
    policy_for,
)

NO_JITTER = {"jitter": 0.0}


def test_webhooks_follow_the_standard_webhooks_schedule_over_ten_attempts() -> None:
    policy = RetryPolicy(**{**WEBHOOK_DEFAULT.__dict__, **NO_JITTER})
    delays = [next_delay(n, policy) for n in range(1, 11)]
    hour = 3600
    assert delays == [
        5,
        300,
        1800,
        2 * hour,
        5 * hour,
        10 * hour,
        14 * hour,
        20 * hour,
        24 * hour,
        None,
    ]
    assert sum(d for d in delays if d) / 86400 == pytest.approx(3.15, abs=0.01)


def test_notifications_retry_three_times_after_about_1_2_and_4_seconds() -> None:
    policy = RetryPolicy(**{**NOTIFICATION_DEFAULT.__dict__, **NO_JITTER})
    assert [next_delay(n, policy) for n in range(1, 5)] == [1, 2, 4, None]
    assert policy_for(EndpointKind.ZAPI) == policy_for(EndpointKind.EMAIL) == NOTIFICATION_DEFAULT


def test_jitter_stays_within_twenty_percent_and_varies() -> None:
    rng = random.Random(7)
    delays = [next_delay(2, WEBHOOK_DEFAULT, rng=rng) for _ in range(200)]
    assert all(d is not None and 240 <= d <= 360 for d in delays)
    assert len({round(d or 0, 3) for d in delays}) > 100


def test_retry_after_replaces_the_computed_delay_but_is_capped() -> None:
    policy = RetryPolicy(max_attempts=5, base=1.0, max_delay=60.0)
    assert next_delay(1, policy, retry_after=30) == 30
    assert next_delay(1, policy, retry_after=10_000) == 60
    assert next_delay(5, policy, retry_after=30) is None


def test_endpoint_settings_override_the_kind_defaults() -> None:
    exponential = policy_for(
        EndpointKind.WEBHOOK, RetryConfig(max_attempts=8, base=10, max_delay=6 * 3600)
    )
    assert exponential.schedule is None and exponential.max_attempts == 8
    plain = RetryPolicy(**{**exponential.__dict__, **NO_JITTER})
    assert [next_delay(n, plain) for n in (1, 2, 3, 7, 8)] == [10, 20, 40, 640, None]
    capped = policy_for(EndpointKind.WEBHOOK, RetryConfig(base=3600, max_delay=7200, jitter=0))
    assert next_delay(5, capped) == 7200

    scheduled = policy_for(EndpointKind.ZAPI, RetryConfig(schedule=[0.1, 0.2], jitter=0))
    assert scheduled.max_attempts == 3
    assert [next_delay(n, scheduled) for n in (1, 2, 3)] == [0.1, 0.2, None]
    longer = policy_for(EndpointKind.WEBHOOK, RetryConfig(max_attempts=4, schedule=[1], jitter=0))
    assert [next_delay(n, longer) for n in (1, 2, 3, 4)] == [1, 1, 1, None]

    only_attempts = policy_for(EndpointKind.WEBHOOK, RetryConfig(max_attempts=3))
    assert only_attempts.schedule == WEBHOOK_DEFAULT.schedule and only_attempts.max_attempts == 3


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (425, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (422, False),
    ],
)
def test_which_statuses_are_worth_another_try(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None

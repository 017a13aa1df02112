"""Retry policy as data, and one pure function deciding the wait before the next attempt.

A policy is either a schedule (explicit delays before attempts 2, 3, …) or an exponential curve
(`base * 2**(attempt-1)` capped at `max_delay`), plus `max_attempts` and a jitter of ±20 %.
`max_attempts` counts every try, the first one included.

Defaults per endpoint kind:
- webhook, amqp, google_calendar: the Standard Webhooks schedule, 10 attempts over about three
  days (at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), so a target down for a
  weekend loses nothing;
- zapi, email, whatsapp_cloud (notifications): seed 001's "3 tentativas com backoff exponencial
  (1s, 2s, 4s)": the first try, then three retries after about 1 s, 2 s and 4 s (4 attempts in all).

What is retried: connection errors, timeouts, 5xx, 408, 425 and 429 (429 and 503 honour
`Retry-After`, capped at `max_delay`); any other 4xx is permanent and goes to dead letter at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from hub.core.models import EndpointKind
from hub.delivery.endpoints import RetryConfig

# Standard Webhooks: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/
WEBHOOK_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
NOTIFICATION_BASE = 1.0
NOTIFICATION_ATTEMPTS = 4
DEFAULT_MAX_DELAY = 86400.0  # a Retry-After or an exponential curve never parks us past a day

RETRYABLE_STATUS = frozenset({408, 425, 429})
RETRY_AFTER_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    schedule: tuple[float, ...] | None = None  # delays before attempts 2, 3, …
    base: float = 1.0
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = 0.2

    def describe(self) -> str:
        shape = f"schedule {list(self.schedule)}" if self.schedule else f"base {self.base}s"
        return f"{self.max_attempts} attempts, {shape}, max {self.max_delay}s, jitter {self.jitter}"


WEBHOOK_DEFAULT = RetryPolicy(max_attempts=len(WEBHOOK_SCHEDULE) + 1, schedule=WEBHOOK_SCHEDULE)
NOTIFICATION_KINDS = (EndpointKind.ZAPI, EndpointKind.EMAIL, EndpointKind.WHATSAPP_CLOUD)
NOTIFICATION_DEFAULT = RetryPolicy(max_attempts=NOTIFICATION_ATTEMPTS, base=NOTIFICATION_BASE)


def policy_for(kind: EndpointKind, config: RetryConfig | None = None) -> RetryPolicy:
    """The endpoint's policy: its `retry` settings over the kind's defaults."""
    default = NOTIFICATION_DEFAULT if kind in NOTIFICATION_KINDS else WEBHOOK_DEFAULT
    if config is None:
        return default
    schedule = default.schedule
    base = default.base
    if config.schedule is not None:
        schedule, base = tuple(config.schedule), default.base
    elif config.base is not None:
        schedule, base = None, config.base
    max_attempts = config.max_attempts
    if max_attempts is None:
        max_attempts = (
            len(config.schedule) + 1 if config.schedule is not None else default.max_attempts
        )
    return RetryPolicy(
        max_attempts=max_attempts,
        schedule=schedule,
        base=base,
        max_delay=config.max_delay if config.max_delay is not None else default.max_delay,
        jitter=config.jitter,
    )


def next_delay(
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
    *,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1-based); None: no attempts left.

    A schedule shorter than `max_attempts` repeats its last delay. `retry_after` (from a 429 or
    503) replaces the computed delay, without jitter, capped at `max_delay`.
    """
    if attempt >= policy.max_attempts:
        return None
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_delay)
    if policy.schedule:
        delay = policy.schedule[min(attempt, len(policy.schedule)) - 1]
    else:
        delay = policy.base * 2 ** (attempt - 1)
    delay = min(delay, policy.max_delay)
    spread = (rng or random).uniform(-policy.jitter, policy.jitter)
    return max(delay * (1 + spread), 0.0)


def is_retryable_status(status_code: int) -> bool:
    """5xx, 408, 425 and 429 are worth another try; any other 4xx is permanent."""
    return status_code >= 500 or status_code in RETRYABLE_STATUS


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)

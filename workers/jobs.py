"""The RQ entry points. Thin on purpose: each takes a batch of ids and hands it, with the
process's WorkerContext, to the code that owns the work."""

from __future__ import annotations

from typing import Any

from workers.context import current

PROCESS_EVENTS = "workers.jobs.process_events"
DELIVER = "workers.jobs.deliver"


def process_events(event_ids: list[str]) -> Any:
    """Match and transform each event, creating and enqueueing its deliveries."""
    from hub.routing import process_events as run

    return run(current(), event_ids)


def deliver(delivery_ids: list[str]) -> Any:
    """Send each delivery to its endpoint, recording attempts, retries and dead letters."""
    from hub.delivery.jobs import deliver_batch

    return deliver_batch(current(), delivery_ids)


REPLAY = "workers.jobs.replay"
REMAP = "workers.jobs.remap"


def replay(dead_letter_ids: list[str]) -> Any:
    """One more attempt of each dead letter's delivery; fails if any is dead again."""
    from hub.replay import run_dead_letters

    return run_dead_letters(current(), dead_letter_ids)


def remap(event_ids: list[str]) -> Any:
    """Run each event through today's mappings again, then resend its dead deliveries."""
    from hub.replay import run_remap

    return run_remap(current(), event_ids)

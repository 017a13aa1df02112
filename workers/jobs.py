"""The RQ entry points. Thin on purpose: each takes a batch of ids and hands it, with the
process's WorkerContext, to the code that owns the work.

Jobs are enqueued by name; the names are defined once in `hub.core.queues` (PROCESS_EVENTS,
DELIVER, REPLAY, REMAP, RUN_SYNC) and must stay the dotted paths of these functions.
"""

from __future__ import annotations

from typing import Any

from hub.delivery.jobs import deliver_batch
from hub.mapping.routing import process_events as route_events
from hub.ops.replay import run_dead_letters, run_remap
from hub.sync.run import run_job
from workers.context import current


def process_events(event_ids: list[str]) -> Any:
    """Match and transform each event, creating its deliveries: sent from this worker's lanes
    where they have room, enqueued for a deliver job otherwise."""
    return route_events(current(), event_ids, send=True)


def deliver(delivery_ids: list[str]) -> Any:
    """Send each delivery to its endpoint, recording attempts, retries and dead letters.

    The job hands each endpoint's group to its lane and returns: the worker takes its next job
    while slow targets answer (their leases cover the sends; see hub.delivery.groups)."""
    return deliver_batch(current(), delivery_ids, wait=False)


def replay(dead_letter_ids: list[str]) -> Any:
    """One more attempt of each dead letter's delivery; fails if any is dead again."""
    return run_dead_letters(current(), dead_letter_ids)


def remap(event_ids: list[str]) -> Any:
    """Run each event through today's mappings again, then resend its dead deliveries."""
    return run_remap(current(), event_ids)


def run_sync(job_ids: list[str]) -> Any:
    """One run of each sync job, if it is still queued (a run never overlaps the previous)."""
    ctx = current()
    return [run_job(ctx, int(job_id)) is not None for job_id in job_ids]

"""Prometheus metrics: every metric hub exports is defined here, and counted through small calls.

Web, worker and sweeper processes all count: with `PROMETHEUS_MULTIPROC_DIR` set (by `hub up`
and supervisord.conf, to `<data_dir>/metrics`) prometheus-client writes each process's values to
files there and `GET /metrics` adds them up. Without it (tests, a lone process) values live in
this process. The variable must be set before the process starts: prometheus-client reads it
when first imported.

Counters and histograms are counted where things happen:

    webhook_received(source, outcome, seconds)   ingress, once per request that named a source
    event_processed(status, count)               mapping, per batch: events by final status
    delivery_attempted(endpoint, outcome, s)     delivery, once per attempt
    replay_requested(kind, outcome)              replay, once per item it handles
    sync_items(source, created, duplicates)      sync, per page: items new and already received
    sync_run(sync, outcome)                      sync, once per run (succeeded, failed)

Gauges that describe state (queue depth and oldest job age, circuit state, dead letters open,
each sync's last run)
are read from Redis and the database when Prometheus scrapes, by `StateCollector`, so they are
right whichever process changed them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from hub.core.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN_SOURCE = "_unknown"  # label for requests naming a source that is not configured

CIRCUIT_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

_dir = os.environ.get(MULTIPROC_ENV)
if _dir:
    Path(_dir).mkdir(parents=True, exist_ok=True)

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS_RECEIVED = Counter(
    "hub_webhooks_received",
    "Webhook requests by source and outcome (accepted, duplicate, or the error code).",
    ["source", "outcome"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "hub_ingest_duration_seconds",
    "Time from request to answer on POST /webhooks/{source}.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
EVENTS_PROCESSED = Counter(
    "hub_events_processed",
    "Events through the mappings, by final status (processed, no_route, failed).",
    ["status"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "hub_delivery_attempts",
    "Delivery attempts by endpoint and outcome (delivered, retry, dead, deferred).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "hub_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt, by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
REPLAYS = Counter(
    "hub_replays",
    "Replay requests by kind (dead_letter, event, remap) and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)

SYNC_ITEMS = Counter(
    "hub_sync_items",
    "Items pulled by syncs, by source and outcome (created: a missed webhook; duplicate).",
    ["source", "outcome"],
    registry=REGISTRY,
)
SYNC_RUNS = Counter(
    "hub_sync_runs",
    "Sync runs by sync and outcome (succeeded, failed).",
    ["sync", "outcome"],
    registry=REGISTRY,
)


_received: dict[tuple[str, str], Any] = {}  # labelled children, looked up once per label set
_ingest_seconds: dict[str, Any] = {}


def webhook_received(source: str, outcome: str, seconds: float | None = None) -> None:
    counter = _received.get((source, outcome))
    if counter is None:
        counter = _received[(source, outcome)] = WEBHOOKS_RECEIVED.labels(source, outcome)
    counter.inc()
    if seconds is not None:
        histogram = _ingest_seconds.get(source)
        if histogram is None:
            histogram = _ingest_seconds[source] = INGEST_SECONDS.labels(source)
        histogram.observe(seconds)


def event_processed(status: str, count: int = 1) -> None:
    if count:
        EVENTS_PROCESSED.labels(status).inc(count)


def delivery_attempted(endpoint: str, outcome: str, seconds: float | None = None) -> None:
    DELIVERIES.labels(endpoint, outcome).inc()
    if seconds is not None:
        ATTEMPT_SECONDS.labels(endpoint).observe(seconds)


def replay_requested(kind: str, outcome: str, count: int = 1) -> None:
    if count:
        REPLAYS.labels(kind, outcome).inc(count)


def sync_items(source: str, created: int, duplicates: int) -> None:
    if created:
        SYNC_ITEMS.labels(source, "created").inc(created)
    if duplicates:
        SYNC_ITEMS.labels(source, "duplicate").inc(duplicates)


def sync_run(sync: str, outcome: str) -> None:
    SYNC_RUNS.labels(sync, outcome).inc()


# -- process setup ---------------------------------------------------------------------------------


def multiprocess_dir(settings: Settings) -> Path:
    """Where `hub up` keeps the per-process metric files."""
    return (settings.data_dir / "metrics").resolve()


def reset_multiprocess_dir(path: Path) -> Path:
    """Empty (or create) the directory before a process tree starts: old files would be summed."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def mark_process_dead(pid: int | None = None) -> None:
    """Tell the multiprocess files that a process has exited (its live gauges stop counting)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid or os.getpid())


# -- exposition ------------------------------------------------------------------------------------


class StateCollector:
    """Gauges read at scrape time from a snapshot the caller took (see `hub.ops.status`)."""

    def __init__(
        self,
        queues: dict[str, tuple[int, float | None]],
        circuits: dict[str, str],
        dead_letters_open: int,
        workers: int,
        syncs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.queues = queues
        self.circuits = circuits
        self.dead_letters_open = dead_letters_open
        self.workers = workers
        self.syncs = syncs or []  # hub.sync.status.sync_stats rows

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("hub_queue_depth", "Jobs waiting per queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "hub_queue_oldest_age_seconds", "Age of the oldest waiting job.", labels=["queue"]
        )
        for name, (count, oldest) in sorted(self.queues.items()):
            depth.add_metric([name], count)
            age.add_metric([name], oldest or 0.0)
        circuit = GaugeMetricFamily(
            "hub_circuit_state",
            "Circuit of each endpoint: 0 closed, 1 half-open, 2 open.",
            labels=["endpoint"],
        )
        for endpoint, state in sorted(self.circuits.items()):
            circuit.add_metric([endpoint], CIRCUIT_VALUE.get(state, 0.0))
        dead = GaugeMetricFamily("hub_dead_letters_open", "Dead letters waiting for an operator.")
        dead.add_metric([], self.dead_letters_open)
        workers = GaugeMetricFamily("hub_workers_alive", "RQ workers registered and alive.")
        workers.add_metric([], self.workers)
        yield from (depth, age, circuit, dead, workers)
        yield from self._sync_gauges()

    def _sync_gauges(self) -> Iterator[Metric]:
        labels = ["sync", "tenant"]
        age = GaugeMetricFamily(
            "hub_sync_last_success_age_seconds",
            "Seconds since each sync's last complete run (absent: never).",
            labels=labels,
        )
        failing = GaugeMetricFamily(
            "hub_sync_failing", "1 while a sync's last run failed, else 0.", labels=labels
        )
        late = GaugeMetricFamily(
            "hub_sync_late", "1 while a sync is late by more than two intervals.", labels=labels
        )
        missed = GaugeMetricFamily(
            "hub_sync_last_run_missed_events",
            "Events the last complete run created (webhooks the source never sent).",
            labels=labels,
        )
        for row in self.syncs:
            key = [row["sync"], row["tenant"]]
            if row["last_success_age_s"] is not None:
                age.add_metric(key, row["last_success_age_s"])
            failing.add_metric(key, 1.0 if row["failing"] else 0.0)
            late.add_metric(key, 1.0 if row["late"] else 0.0)
            missed.add_metric(key, float(row["last_run"]["created"] if row["last_run"] else 0))
        yield from (age, failing, late, missed)


def render(state: StateCollector | None = None) -> bytes:
    """The exposition text: counters of every process (or this one), then the state gauges."""
    parts: list[bytes] = []
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        _multiprocess.MultiProcessCollector(merged)
        parts.append(generate_latest(merged))
    else:
        parts.append(generate_latest(REGISTRY))
    if state is not None:
        snapshot = CollectorRegistry()
        snapshot.register(state)
        parts.append(generate_latest(snapshot))
    return b"".join(parts)


def sample_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """Read one sample back from exposition text (for `hub status` and tests)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = labels or {}
    families: Iterable[Metric] = text_string_to_metric_families(text)
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                return float(sample.value)
    return None

"""The console's front page for operators: the `/status` snapshot, drawn, refreshed every 5 s.

Events and deliveries per minute (the hour) and per 10 minutes (the day) as inline SVG; per
endpoint the success rate and p95 attempt latency of the last hour, its circuit and whether it
is paused; queue depths and oldest ages; open dead letters; the alerts of `/status`. The numbers
are `hub.ops.status.collect`'s, the same as `hub status` prints. A tenant's admin, who may not
see other tenants' numbers, lands on the events page instead.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.console import charts, templates
from hub.console.session import page
from hub.core.models import DeliveryAttempt, WebhookDelivery, utcnow
from hub.delivery import pauses
from hub.ingress.principals import Principal
from hub.ops import status

REFRESH = 5  # seconds between refreshes of the page
DAY_CHART_TTL = 60.0  # the day's chart is drawn again at most once a minute
LATENCY_SAMPLE = 100_000  # attempts of the last hour read for the p95, at most


def p95_latency(engine: Engine, since: datetime) -> dict[str, int]:
    """The 95th percentile of attempt durations (ms) per endpoint since `since`."""
    durations: dict[str, list[int]] = defaultdict(list)
    with engine.connect() as conn:
        rows = conn.execute(
            select(WebhookDelivery.endpoint, DeliveryAttempt.duration_ms)
            .join(WebhookDelivery, WebhookDelivery.id == DeliveryAttempt.delivery_id)
            .where(DeliveryAttempt.started_at >= since, DeliveryAttempt.outcome != "deferred")
            .limit(LATENCY_SAMPLE)
        )
        for endpoint, duration in rows:
            durations[endpoint].append(int(duration))
    out = {}
    for endpoint, values in durations.items():
        values.sort()
        out[endpoint] = values[min(len(values) - 1, int(0.95 * len(values)))]
    return out


def snapshot(request: Request) -> dict[str, Any]:
    state = request.app.state
    now = utcnow()
    found = status.collect(state.engine, state.redis, state.settings, now)
    latency = p95_latency(state.engine, now - timedelta(hours=1))
    paused = pauses.paused(state.engine)
    for name, stat in found["endpoints"].items():
        stat["p95_ms"] = latency.get(name)
        stat["paused"] = name in paused
    hour = charts.counts(state.engine, now, charts.HOUR)
    cached = getattr(state, "console_day_chart", None)
    if cached is None or time.monotonic() - cached[0] > DAY_CHART_TTL:
        cached = state.console_day_chart = (
            time.monotonic(),
            charts.svg(charts.counts(state.engine, now, charts.DAY), charts.DAY),
        )
    return found | {"hour_chart": charts.svg(hour, charts.HOUR), "day_chart": cached[1]}


@page()
async def overview(request: Request, principal: Principal) -> Response:
    if not principal.is_operator:
        return RedirectResponse("/console/events", 303)
    found = await run_in_threadpool(snapshot, request)
    return templates.render(request, "overview.html", s=found, refresh=REFRESH)

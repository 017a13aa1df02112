"""Events and deliveries over time, counted by the database and drawn as inline SVG.

`counts` buckets rows since a start time (the hour by minute, the day by 10 minutes) with one
GROUP BY on an index: events on their time-ordered primary key, deliveries on `created_at`.
`svg` draws the series as lines with the largest value marked, no script, no image files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import Engine, Integer, cast, func, literal, literal_column, select

from hub.core import ids
from hub.core.models import IntegrationEvent, WebhookDelivery

WIDTH, HEIGHT, PAD = 640, 150, 24
COLORS = ("#2f5bd3", "#12805c")


@dataclass(frozen=True)
class Window:
    label: str
    minutes: int  # how far back
    bucket: int  # minutes per point

    @property
    def points(self) -> int:
        return self.minutes // self.bucket


HOUR = Window("last hour, per minute", 60, 1)
DAY = Window("last day, per 10 minutes", 1440, 10)


def _bucket(engine: Engine, column: Any, start: datetime, size: int) -> Any:
    if engine.dialect.name == "sqlite":
        minutes = (func.julianday(column) - func.julianday(literal(start.isoformat(" ")))) * 1440
        return cast(minutes / size, Integer)
    minutes = func.timestampdiff(literal_column("MINUTE"), literal(start), column)
    return func.floor(minutes / size)


def counts(engine: Engine, now: datetime, window: Window) -> dict[str, list[int]]:
    """Events received and deliveries created per bucket of `window`, oldest first."""
    start = (now - timedelta(minutes=window.minutes)).replace(second=0, microsecond=0)
    floor = ids.floor_id(ids.EVENT, int(start.replace(tzinfo=UTC).timestamp() * 1000))
    series = {}
    with engine.connect() as conn:
        for name, column, extra in (
            ("events", IntegrationEvent.created_at, [IntegrationEvent.id >= floor]),
            ("deliveries", WebhookDelivery.created_at, []),
        ):
            bucket = _bucket(engine, column, start, window.bucket).label("b")
            rows = conn.execute(
                select(bucket, func.count()).where(column >= start, *extra).group_by(bucket)
            ).all()
            values = [0] * (window.points + 1)
            for index, count in rows:
                if index is not None and 0 <= int(index) <= window.points:
                    values[int(index)] += int(count)
            series[name] = values
    return series


def svg(series: dict[str, list[int]], window: Window) -> Markup:
    """The series as an inline SVG chart (a line each, a legend, the peak value)."""
    peak = max([1, *(v for values in series.values() for v in values)])
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(window.label)}">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#d0d5dd"/>',
        f'<text x="{PAD}" y="14" font-size="11" fill="#667085">{escape(window.label)} · '
        f"peak {peak}</text>",
    ]
    for (name, values), color in zip(series.items(), COLORS, strict=False):
        step = inner_w / max(len(values) - 1, 1)
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - inner_h * v / peak:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{points}">'
            f"<title>{escape(name)}: {sum(values)} in all</title></polyline>"
        )
    legend_x = WIDTH - PAD - 200
    for i, ((name, values), color) in enumerate(zip(series.items(), COLORS, strict=False)):
        x = legend_x + i * 100
        parts.append(f'<rect x="{x}" y="5" width="10" height="10" fill="{color}"/>')
        parts.append(
            f'<text x="{x + 14}" y="14" font-size="11" fill="#344054">'
            f"{escape(name)} {sum(values)}</text>"
        )
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT - 6}" font-size="10" fill="#98a2b3">'
        f"-{window.minutes} min</text>"
        f'<text x="{WIDTH - PAD - 20}" y="{HEIGHT - 6}" font-size="10" fill="#98a2b3">now</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))

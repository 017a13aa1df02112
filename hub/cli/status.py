"""`hub status`: the snapshot of `GET /status`, as terminal tables or JSON."""

from __future__ import annotations

from typing import Any

import click
import orjson


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(status)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as one JSON object.")
def status(as_json: bool) -> None:
    """Queues, workers, events and deliveries, endpoints, retries, dead letters and alerts.

    Exits 1 when there are alerts (so a cron job or a probe can notice), 0 otherwise.
    """
    from hub.cli.group import load_settings
    from hub.core.db import check_database, create_db_engine
    from hub.core.queues import check_redis, connect_redis
    from hub.ops.status import collect

    settings = load_settings()
    engine = create_db_engine(settings)
    redis = connect_redis(settings)
    try:
        check_database(engine)
        check_redis(redis, settings)
        snapshot = collect(engine, redis, settings)
    finally:
        redis.close()
        engine.dispose()
    if as_json:
        click.echo(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(snapshot))
    if snapshot["alerts"]:
        raise SystemExit(1)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned table (left-aligned text, right-aligned numbers)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _statuses(counts: dict[str, dict[str, int]]) -> list[list[Any]]:
    names = sorted(set(counts["last_hour"]) | set(counts["last_day"]))
    return [[n, counts["last_hour"].get(n, 0), counts["last_day"].get(n, 0)] for n in names]


def render(snapshot: dict[str, Any]) -> str:
    sections: list[str] = [f"hub status at {snapshot['generated_at']}"]
    queues = [[n, q["depth"], q["oldest_age_s"]] for n, q in snapshot["queues"].items()]
    sections.append(table(["queue", "depth", "oldest (s)"], queues))
    workers = snapshot["workers"]
    sections.append(
        table(
            ["worker", "state", "queues"],
            [[w["name"], w["state"], ",".join(w["queues"])] for w in workers["list"]],
        )
        + f"\n{workers['alive']} alive"
    )
    sections.append(table(["event status", "last hour", "last day"], _statuses(snapshot["events"])))
    sections.append(
        table(["delivery status", "last hour", "last day"], _statuses(snapshot["deliveries"]))
    )
    endpoints = [
        [
            name,
            e["attempts"],
            e["delivered"],
            e["failed"],
            None if e["success_rate"] is None else f"{e['success_rate']:.1%}",
            e.get("circuit", "-"),
        ]
        for name, e in snapshot["endpoints"].items()
    ]
    sections.append(
        table(["endpoint (last hour)", "attempts", "ok", "failed", "success", "circuit"], endpoints)
    )
    if snapshot.get("syncs"):
        sections.append(sync_table(snapshot["syncs"]))
    r = snapshot["retries"]
    d = snapshot["dead_letters"]
    sections.append(
        f"retries: {r['backlog']} scheduled, {r['due']} due"
        + (f" (oldest {r['oldest_due_age_s']:.0f}s overdue)" if r["oldest_due_age_s"] else "")
        + f"; {r['pending_deliveries']} deliveries pending\n"
        + f"dead letters: {d['open']} open"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(d["open_by_stage"].items())) + ")"
            if d["open_by_stage"]
            else ""
        )
        + f", {d['opened_last_hour']} opened in the last hour"
    )
    if snapshot["alerts"]:
        sections.append("ALERTS\n" + "\n".join(f"  ! {a['message']}" for a in snapshot["alerts"]))
    else:
        sections.append("no alerts")
    return "\n\n".join(sections)


def sync_table(rows: list[dict[str, Any]]) -> str:
    """Each sync job: its state, last run, what it found (also `hub sync list`)."""
    body = []
    for row in rows:
        last = row["last_run"] or {}
        body.append(
            [
                row["sync"],
                row["tenant"],
                row["status"] + (" LATE" if row["late"] else ""),
                last.get("status"),
                last.get("age_s"),
                last.get("created"),
                last.get("duplicates"),
                row["missed_last_day"],
                row["next_run_at"],
            ]
        )
    return table(
        [
            "sync",
            "tenant",
            "state",
            "last run",
            "age (s)",
            "missed",
            "duplicates",
            "missed (day)",
            "next run",
        ],
        body,
    )

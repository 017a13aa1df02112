"""The console's dead letters: a filtered list, many replayed or discarded at once, and progress.

The list is `hub.ops.admin.dead_letter_filter` paged on the primary key (`before=<id>`, newest
first). Select some, or "all that match", then replay or discard: a confirmation page first says
how many, and only its form does it. Replay is `hub.ops.replay` (the CLI's and the API's code:
the same delivery and webhook-id, `replayed` only once delivered): selected letters one by one on
the `retry` queue, "all that match" as a bulk run on `low`. The progress page follows the jobs.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hub.console import templates
from hub.console.session import page
from hub.core import audit, dead_letters
from hub.core.dead_letters import DeadLetterFilter
from hub.core.errors import BadRequest
from hub.core.models import DeadLetter, DeadLetterStage, DeadLetterStatus
from hub.ingress.principals import Principal
from hub.ops import admin, replay
from hub.ops.params import DeadLettersQuery, parse

FILTERS = ("status", "stage", "source", "endpoint", "tenant", "since", "until")
PAGE = 50
MAX_SELECTED = 500


def _params(raw: Any) -> dict[str, str]:
    return {k: str(raw[k]).strip() for k in FILTERS if raw.get(k) and str(raw[k]).strip()}


def _where(engine: Engine, principal: Principal, params: dict[str, str]) -> DeadLetterFilter:
    q = parse(DeadLettersQuery, params)  # BadRequest names a bad filter
    status = None if q.status == "all" else DeadLetterStatus(q.status)
    with Session(engine) as session:
        return admin.dead_letter_filter(session, principal, q, status=status, stage=q.stage)


def listing(engine: Engine, principal: Principal, params: dict[str, str], before: str | None):
    where = _where(engine, principal, params)
    with Session(engine) as session:
        query = select(DeadLetter).where(*dead_letters.clauses(where))
        if before:
            query = query.where(DeadLetter.id < before)
        rows = list(session.scalars(query.order_by(DeadLetter.id.desc()).limit(PAGE + 1)))
        letters = [admin.dead_letter_dict(dl) for dl in rows[:PAGE]]
    return letters, (rows[PAGE - 1].id if len(rows) > PAGE else None)


@page()
async def index(request: Request, principal: Principal) -> Response:
    params = _params(request.query_params)
    before = request.query_params.get("before") or None
    letters, next_before = await run_in_threadpool(
        listing, request.app.state.engine, principal, params, before
    )
    return templates.render(
        request,
        "dead_letters.html",
        letters=letters,
        next_before=next_before,
        filters=params,
        statuses=[s.value for s in DeadLetterStatus] + ["all"],
        stages=[s.value for s in DeadLetterStage],
    )


def _act(request: Request, principal: Principal, fields: dict[str, list[str]]) -> dict[str, Any]:
    """Count (unconfirmed) or do (confirmed) what the form asks; blocking."""
    state = request.app.state
    action = (fields.get("action") or [""])[0]
    scope = (fields.get("scope") or ["selected"])[0]
    if action not in ("replay", "discard"):
        raise BadRequest("action must be replay or discard")
    if scope not in ("selected", "matching"):
        raise BadRequest("scope must be selected or matching")
    params = _params({k: v[0] for k, v in fields.items() if v})
    params.pop("status", None)  # only open letters are replayed or discarded
    where = _where(state.engine, principal, params)
    selected = list(dict.fromkeys(fields.get("ids", [])))
    if scope == "selected" and not selected:
        raise BadRequest("select at least one dead letter, or choose all that match")
    if len(selected) > MAX_SELECTED:
        raise BadRequest(f"select at most {MAX_SELECTED}; use 'all that match' for more")
    tenant = principal.tenant_scope()
    actor = audit.key_actor(principal.key_id)
    if scope == "selected":
        with Session(state.engine) as session:  # unknown or another tenant's: 404
            for letter_id in selected:
                dead_letters.get(session, letter_id, tenant_id=tenant)
    count = len(selected) if scope == "selected" else replay.count_dead_letters(state.engine, where)
    out: dict[str, Any] = {
        "action": action,
        "scope": scope,
        "ids": selected,
        "filters": params,
        "count": count,
    }
    if (fields.get("confirmed") or [""])[0] != "1":
        return out
    if action == "discard":
        out["done"] = _discard(
            state.engine, selected if scope == "selected" else None, where, tenant, actor
        )
        out["summary"] = f"discarded {out['done']} dead letter(s)"
        return out
    if scope == "matching":
        report = replay.request_bulk(state.engine, state.redis, where, actor=actor)
    else:
        report = replay.Report(False)
        for letter_id in selected:
            one = replay.request_dead_letter(
                state.engine, state.redis, letter_id, tenant_id=tenant, actor=actor
            )
            report.items += one.items
            report.jobs += one.jobs
            report.queue = one.queue or report.queue
    out["summary"] = report.summary()
    out["jobs"] = report.jobs
    return out


def _discard(
    engine: Engine, ids: list[str] | None, where: DeadLetterFilter, tenant: int | None, actor: str
) -> int:
    done = 0
    if ids is None:
        ids = [dl.id for chunk in replay.iter_dead_letters(engine, where, None) for dl in chunk]
    with Session(engine) as session, session.begin():
        for letter_id in ids:
            letter = dead_letters.get(session, letter_id, tenant_id=tenant)
            if letter.status == DeadLetterStatus.OPEN:
                dead_letters.discard(session, letter_id, tenant_id=tenant, actor=actor)
                done += 1
    return done


@page()
async def act(request: Request, principal: Principal) -> Response:
    out = await run_in_threadpool(_act, request, principal, request.state.form)
    if "summary" not in out:
        return templates.render(request, "confirm.html", **out)
    jobs = _progress(request, out.get("jobs", []))
    return templates.render(request, "progress.html", **(out | {"jobs": jobs}))


def _progress(request: Request, job_ids: list[str]) -> dict[str, Any]:
    """Where the replay jobs are: finished jobs leave Redis (result_ttl 0), failed ones stay."""
    states = {"done": 0, "waiting": 0, "failed": 0}
    if job_ids:
        for job in Job.fetch_many(job_ids, request.app.state.redis):
            status = None if job is None else job.get_status(refresh=False)
            if status is None or status == "finished":
                states["done"] += 1
            elif status == "failed":
                states["failed"] += 1
            else:
                states["waiting"] += 1
    return {"ids": job_ids, "total": len(job_ids), **states}


@page()
async def progress(request: Request, principal: Principal) -> Response:
    job_ids = request.query_params.getlist("job")[:1000]
    jobs = await run_in_threadpool(_progress, request, job_ids)
    return templates.render(request, "progress.html", jobs=jobs, summary=None, count=None)


def _letter(engine: Engine, principal: Principal, letter_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        letter = admin.dead_letter_dict(
            dead_letters.get(session, letter_id, tenant_id=principal.tenant_scope())
        )
    event = admin.show_event(engine, principal, letter["event_id"])
    delivery = next((d for d in event["deliveries"] if d["id"] == letter["delivery_id"]), None)
    return {"letter": letter, "event": event["event"], "delivery": delivery}


@page()
async def show(request: Request, principal: Principal) -> Response:
    found = await run_in_threadpool(
        _letter, request.app.state.engine, principal, request.path_params["dead_letter_id"]
    )
    return templates.render(request, "dead_letter.html", **found)

"""`GET /admin/audit`: the audit log (hub.core.audit), newest first.

A tenant's admin key sees its own tenant's entries; an operator key sees every entry, or one
tenant's with `?tenant=`. Filters: `action`, `since` (`2h`, `7d` or an ISO time); paging: `limit`
(1-500) and `offset`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hub.core import audit
from hub.ingress.principals import Principal, requires_key
from hub.ops import replay
from hub.ops.params import MAX_PAGE, AuditQuery, parse


def list_audit(engine: Any, principal: Principal, q: AuditQuery) -> dict[str, Any]:
    tenant_id = principal.tenant_scope()
    if tenant_id is None and q.tenant:
        with Session(engine) as session:
            tenant_id = replay.tenant_id_of(session, q.tenant)
    since = replay.parse_time(q.since) if q.since else None
    where = audit.AuditFilter(tenant_id, q.action, since, q.limit, q.offset)
    return {"entries": audit.entries(engine, where), "limit": q.limit, "max_limit": MAX_PAGE}


@requires_key()
async def audit_index(request: Request, principal: Principal) -> Response:
    query = parse(AuditQuery, dict(request.query_params))
    body = await run_in_threadpool(list_audit, request.app.state.engine, principal, query)
    return JSONResponse(body)


ROUTES: list[BaseRoute] = [Route("/admin/audit", audit_index, methods=["GET"])]

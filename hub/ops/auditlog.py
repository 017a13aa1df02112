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
from hub.core.errors import BadRequest
from hub.ingress.principals import Principal, requires_key
from hub.ops import replay
from hub.ops.admin import MAX_PAGE, _limit

MAX_OFFSET = 1_000_000


def list_audit(engine: Any, principal: Principal, params: dict[str, str]) -> dict[str, Any]:
    offset_text = params.get("offset") or "0"
    if not offset_text.isdigit() or int(offset_text) > MAX_OFFSET:
        raise BadRequest(f"offset must be a whole number from 0 to {MAX_OFFSET}")
    tenant_id = principal.tenant_scope()
    if tenant_id is None and params.get("tenant"):
        with Session(engine) as session:
            tenant_id = replay.tenant_id_of(session, params["tenant"])
    since = replay.parse_time(params["since"]) if params.get("since") else None
    limit = _limit(params.get("limit"), 100)
    where = audit.AuditFilter(
        tenant_id, params.get("action") or None, since, limit, int(offset_text)
    )
    return {"entries": audit.entries(engine, where), "limit": limit, "max_limit": MAX_PAGE}


@requires_key()
async def audit_index(request: Request, principal: Principal) -> Response:
    params = dict(request.query_params)
    body = await run_in_threadpool(list_audit, request.app.state.engine, principal, params)
    return JSONResponse(body)


ROUTES: list[BaseRoute] = [Route("/admin/audit", audit_index, methods=["GET"])]

"""The audit log records replays, discards and console sign-ins with who did them, and
GET /admin/audit shows each tenant's admin only its own entries."""

from __future__ import annotations

from starlette.testclient import TestClient

from hub.core import audit, dead_letters
from hub.core.audit import AuditFilter
from hub.core.dead_letters import DeadLetterFilter
from hub.core.models import DeadLetter
from hub.ops import replay
from tests.console.conftest import sign_in
from tests.delivery.conftest import TargetServer, World
from tests.ops.conftest import Keys, auth, dead_delivery
from workers.context import WorkerContext


def _actions(ctx: WorkerContext) -> list[tuple[str, str]]:
    return [(e["action"], e["actor"]) for e in audit.entries(ctx.engine, AuditFilter())]


def test_replays_discards_and_sign_ins_are_audited(
    ctx: WorkerContext, world: World, target: TargetServer, client: TestClient, keys: Keys
) -> None:
    first = dead_delivery(ctx, world, target)
    second = dead_delivery(ctx, world, target)
    with ctx.sessions() as session:
        letters = {dl.delivery_id: dl.id for dl in session.query(DeadLetter)}

    dry = replay.request_bulk(ctx.engine, ctx.redis, DeadLetterFilter(), dry_run=True, actor="x")
    assert dry.count("replay") == 2 and _actions(ctx) == []  # a dry run changes nothing
    replay.request_dead_letter(ctx.engine, ctx.redis, letters[first], actor="cli:alice")
    with ctx.sessions() as session, session.begin():
        dead_letters.discard(session, letters[second], actor="cli:bob")
    answer = client.post(f"/admin/dead-letters/{letters[second]}/discard", headers=auth(keys.admin))
    assert answer.status_code == 200  # already discarded: nothing new to record
    sign_in(client, keys.operator)

    actions = _actions(ctx)
    assert actions[:3] == [
        ("console.sign_in", actions[0][1]),
        ("discard", "cli:bob"),
        ("replay", "cli:alice"),
    ], actions
    assert actions[0][1].startswith("key:")
    assert len(actions) == 3

    mine = client.get("/admin/audit", headers=auth(keys.admin)).json()["entries"]
    assert {e["action"] for e in mine} == {"discard", "replay"}  # clinic-1's, not the sign-in
    assert client.get("/admin/audit", headers=auth(keys.other_admin)).json()["entries"] == []
    bad = client.get("/admin/audit?offset=-1", headers=auth(keys.operator))
    assert bad.status_code == 400 and "offset" in bad.json()["error"]["message"]

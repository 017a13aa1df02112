"""google_calendar: Google's token endpoint and Calendar events API stood in for on loopback (with
their error shapes); upsert never makes a second entry, cancel deletes, tokens are cached."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from redis import Redis
from sqlalchemy import Engine, func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub.core.models import CalendarLink
from hub.delivery.adapters import DeliveryRef, OutgoingRequest, Target, Verdict
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.kinds import Adapters
from tests.delivery.conftest import LOOPBACK, Seen, TargetServer

CAL = "clinic1@group.calendar.google.com"


def google_error(code: int, message: str, reason: str, **headers: str) -> Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }
    return JSONResponse(body, code, headers=headers)


class GoogleStandIn(TargetServer):
    """POST /token (refresh_token grant) and /calendars/{id}/events insert, patch, delete, list."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, dict[str, Any]] = {}
        self.failures: list[Response] = []
        self.valid_tokens: set[str] = set()
        self.refresh_token = "rt-good"
        self._ids = itertools.count(1)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        self.seen.append(Seen(request.method, path, dict(request.headers), body))
        if path == "/token":
            form = (
                dict(await request.form())
                if not body
                else dict(pair.split("=", 1) for pair in body.decode().split("&"))
            )
            if form.get("refresh_token") != self.refresh_token:
                return JSONResponse(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                    400,
                )
            token = f"at-{next(self._ids)}"
            self.valid_tokens.add(token)
            return JSONResponse({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.valid_tokens:
            return google_error(401, "Request had invalid authentication credentials.", "authError")
        if self.failures:
            return self.failures.pop(0)
        prefix = "/calendar/v3/calendars/clinic1%40group.calendar.google.com/events"
        raw = request.scope["raw_path"].decode()
        if not raw.startswith(prefix):
            return google_error(404, "Not Found", "notFound")
        event_id = raw[len(prefix) + 1 :] or None
        if request.method == "GET" and event_id is None:
            wanted = request.query_params.get("privateExtendedProperty", "")
            name, _, value = wanted.partition("=")
            items = [
                e
                for e in self.events.values()
                if e.get("extendedProperties", {}).get("private", {}).get(name) == value
            ]
            return JSONResponse({"kind": "calendar#events", "items": items})
        if request.method == "POST" and event_id is None:
            event = orjson.loads(body) | {"id": f"ev{next(self._ids)}", "status": "confirmed"}
            self.events[event["id"]] = event
            return JSONResponse(event)
        if event_id not in self.events:
            return google_error(410, "Resource has been deleted", "deleted")
        if request.method == "PATCH":
            self.events[event_id] |= orjson.loads(body)
            return JSONResponse(self.events[event_id])
        if request.method == "DELETE":
            del self.events[event_id]
            return Response(status_code=204)
        return google_error(405, "Method not allowed", "methodNotAllowed")


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleStandIn]:
    server = GoogleStandIn().start()
    monkeypatch.setenv("GCAL_API", server.url + "/calendar/v3")
    monkeypatch.setenv("GCAL_TOKEN_URL", server.url + "/token")
    for name, value in {
        "CLIENT_ID": "cid",
        "CLIENT_SECRET": "csecret",
        "REFRESH_TOKEN": "rt-good",
        "ID": CAL,
    }.items():
        monkeypatch.setenv(f"CLINIC_1_GCAL_{name}", value)
    yield server
    server.stop()


@pytest.fixture
def adapters(engine: Engine, redis: Redis) -> Iterator[Adapters]:
    pool = Adapters(engine=engine, redis=redis, egress=LOOPBACK)  # Google on 127.0.0.1
    yield pool
    pool.close()


CONFIG = {
    "kind": "google_calendar",
    "url": "env:GCAL_API",
    "client_id": "env:{TENANT}_GCAL_CLIENT_ID",
    "client_secret": "env:{TENANT}_GCAL_CLIENT_SECRET",
    "refresh_token": "env:{TENANT}_GCAL_REFRESH_TOKEN",
    "calendar_id": "env:{TENANT}_GCAL_ID",
}


def send(
    adapters: Adapters,
    google: GoogleStandIn,
    operation: str,
    body: Any = None,
    key: str = "apt-1",
    **options: Any,
) -> Any:
    config = EndpointConfig.model_validate(CONFIG | {"token_url": google.url + "/token"})
    request = OutgoingRequest(
        body=body
        or {
            "summary": "Consulta Ana",
            "start": "2026-12-01T10:00:00",
            "end": "2026-12-01T11:00:00",
        },
        options={"operation": operation, "appointment_key": key, **options},
    )
    return adapters.for_kind(config.kind).send(
        request, Target("agenda", config, "clinic-1"), DeliveryRef("dlv_01CAL", 1)
    )


def links(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(CalendarLink)) or 0)


def test_upsert_inserts_once_then_patches_the_same_event(
    google: GoogleStandIn, adapters: Adapters, engine: Engine
) -> None:
    assert send(adapters, google, "upsert").verdict == Verdict.DELIVERED
    (event,) = google.events.values()
    assert event["start"] == {
        "dateTime": "2026-12-01T10:00:00-03:00",
        "timeZone": "America/Sao_Paulo",
    }
    assert event["extendedProperties"]["private"]["hubAppointmentKey"] == "apt-1"
    changed = {
        "summary": "Consulta Ana (remarcada)",
        "start": "2026-12-02T09:00:00Z",
        "end": "2026-12-02T10:00:00Z",
    }
    assert send(adapters, google, "upsert", changed).verdict == Verdict.DELIVERED
    (event,) = google.events.values()
    assert event["summary"] == "Consulta Ana (remarcada)"
    assert [s.method for s in google.seen].count("POST") == 2  # one token, one insert
    assert links(engine) == 1


def test_without_the_link_the_key_is_found_in_the_calendar(
    google: GoogleStandIn, adapters: Adapters, engine: Engine
) -> None:
    """A retry after a timeout: the insert happened, our link did not (here: deleted)."""
    send(adapters, google, "upsert")
    with engine.begin() as conn:
        conn.execute(CalendarLink.__table__.delete())
    assert send(adapters, google, "upsert").verdict == Verdict.DELIVERED
    assert len(google.events) == 1 and links(engine) == 1


def test_cancel_deletes_and_a_second_cancel_is_done_too(
    google: GoogleStandIn, adapters: Adapters, engine: Engine
) -> None:
    send(adapters, google, "upsert")
    assert send(adapters, google, "cancel").verdict == Verdict.DELIVERED
    assert google.events == {} and links(engine) == 0
    assert send(adapters, google, "cancel").verdict == Verdict.DELIVERED


def test_an_event_deleted_in_the_calendar_is_inserted_again(
    google: GoogleStandIn, adapters: Adapters
) -> None:
    send(adapters, google, "upsert")
    google.events.clear()  # someone deleted it by hand: PATCH answers 410
    assert send(adapters, google, "upsert").verdict == Verdict.DELIVERED
    assert len(google.events) == 1


def test_the_token_is_cached_and_a_401_refreshes_it_once(
    google: GoogleStandIn, adapters: Adapters
) -> None:
    send(adapters, google, "upsert", key="a")
    send(adapters, google, "upsert", key="b")
    assert [s.path for s in google.seen].count("/token") == 1
    google.valid_tokens.clear()  # expired early
    assert send(adapters, google, "upsert", key="c").verdict == Verdict.DELIVERED
    assert [s.path for s in google.seen].count("/token") == 2


def test_a_revoked_refresh_token_is_permanent_with_the_reason(
    google: GoogleStandIn, adapters: Adapters
) -> None:
    google.refresh_token = "rt-other"
    outcome = send(adapters, google, "upsert")
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "oauth_refused")
    assert "invalid_grant" in outcome.error


@pytest.mark.parametrize(
    ("reply", "verdict", "retry_after"),
    [
        (
            google_error(429, "Rate Limit Exceeded", "rateLimitExceeded", **{"Retry-After": "30"}),
            Verdict.RETRY,
            30.0,
        ),
        (google_error(403, "Rate Limit Exceeded", "userRateLimitExceeded"), Verdict.RETRY, None),
        (google_error(503, "Backend Error", "backendError"), Verdict.RETRY, None),
        (google_error(400, "Bad Request", "invalid"), Verdict.DEAD, None),
    ],
)
def test_calendar_errors_are_classified(
    google: GoogleStandIn,
    adapters: Adapters,
    reply: Response,
    verdict: str,
    retry_after: float | None,
) -> None:
    google.failures.append(reply)
    outcome = send(adapters, google, "upsert")
    assert outcome.verdict == verdict and outcome.retry_after == retry_after
    assert google.events == {}


def test_a_time_that_does_not_parse_is_permanent_and_names_the_path(
    google: GoogleStandIn, adapters: Adapters
) -> None:
    body = {"summary": "x", "start": "31/12/2026 10h", "end": "2026-12-31T11:00:00"}
    outcome = send(adapters, google, "upsert", body)
    assert outcome.verdict == Verdict.DEAD and "body.start" in outcome.error
    assert google.seen == []


def test_the_routes_timezone_and_all_day_dates(google: GoogleStandIn, adapters: Adapters) -> None:
    body = {"summary": "x", "start": "2026-12-01T10:00:00", "end": "2026-12-02"}
    send(adapters, google, "upsert", body, timezone="America/Manaus")
    (event,) = google.events.values()
    assert event["start"]["dateTime"] == "2026-12-01T10:00:00-04:00"
    assert event["end"] == {"date": "2026-12-02"}


def test_an_endpoint_missing_its_refresh_token_names_it() -> None:
    config = {k: v for k, v in CONFIG.items() if k != "refresh_token"}
    with pytest.raises(ValueError, match="google_calendar endpoint needs refresh_token"):
        EndpointConfig.model_validate(config)

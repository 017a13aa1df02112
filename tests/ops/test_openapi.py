"""GET /openapi.json describes the HTTP API, and the live API keeps to it: schemathesis sends
generated requests to every operation of a running server and finds no 5xx, and no status,
content type, header or body that the description does not allow."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.app import create_app
from hub.core.settings import Settings
from hub.ingress.route import FastIngress
from hub.ops.openapi import build_spec
from tests.delivery.conftest import TargetServer, World
from tests.ops.conftest import Keys, dead_delivery
from workers.context import WorkerContext

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class LiveServer:
    """The app as `hub serve` runs it (FastIngress in front), on a loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = FastIngress(create_app(settings))
        config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def live(
    settings: Settings, ctx: WorkerContext, world: World, target: TargetServer, keys: Keys
) -> Iterator[tuple[LiveServer, Keys]]:
    dead_delivery(ctx, world, target)  # an event, a delivery with an attempt, a dead letter
    with LiveServer(settings) as server:
        yield server, keys


@pytest.fixture
def api(live: tuple[LiveServer, Keys]) -> schemathesis.BaseSchema:
    server, _ = live
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_every_route_of_the_app_is_described(settings: Settings) -> None:
    """A route added without its description fails here (the pages and /rq are not the API)."""
    spec = build_spec()
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for route in create_app(settings).routes:
        methods = getattr(route, "methods", None)
        if methods is None or route.path in ("/openapi.json",):  # type: ignore[attr-defined]
            continue
        served |= {(route.path, m) for m in methods if m != "HEAD"}  # type: ignore[attr-defined]
    assert served - described == set(), "routes without a description"


def test_the_description_is_openapi_3_1_and_names_every_route(
    live: tuple[LiveServer, Keys],
) -> None:
    server, _ = live
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) == {
        "/webhooks/{source}",
        "/health",
        "/status",
        "/metrics",
        "/admin/events",
        "/admin/events/{event_id}",
        "/admin/events/{event_id}/replay",
        "/admin/dead-letters",
        "/admin/dead-letters/replay",
        "/admin/dead-letters/{dead_letter_id}",
        "/admin/dead-letters/{dead_letter_id}/replay",
        "/admin/dead-letters/{dead_letter_id}/discard",
        "/admin/simulate",
        "/admin/tenants",
        "/admin/tenants/{slug}",
        "/admin/tenants/{slug}/limits",
        "/admin/audit",
        "/admin/erasures",
    }
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]


def test_the_live_api_keeps_to_its_description(
    live: tuple[LiveServer, Keys], api: schemathesis.BaseSchema
) -> None:
    server, keys = live
    checked = []
    for result in api.get_all_operations():
        operation = result.ok()
        operator_only = operation.path.startswith(("/admin/tenants", "/status"))
        key = keys.operator if operator_only else keys.admin

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def keeps_to_it(case: schemathesis.Case) -> None:
            headers = {"X-API-Key": key}  # noqa: B023 - called at once, in this iteration
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

        keeps_to_it()
        checked.append(operation.label)
    assert len(checked) == 23, checked

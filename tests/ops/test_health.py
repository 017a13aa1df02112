from __future__ import annotations

import socket

from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.settings import Settings


def test_health_is_ok_when_database_and_redis_answer(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis"}


def test_health_is_503_naming_redis_when_it_is_down(settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    with TestClient(create_app(down)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"

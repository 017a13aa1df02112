"""GET /health answers within about a second even when the database does not answer at all."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.settings import Settings
from tests.conftest import require_mysqlclient


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung MySQL)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
def test_a_hung_database_is_reported_down_without_waiting_for_its_timeout(
    settings: Settings, silent_port: int, driver: str
) -> None:
    if driver == "mysqldb":
        require_mysqlclient()
    hung = settings.model_copy(
        update={"database_url": f"mysql+{driver}://hub@127.0.0.1:{silent_port}/hub"}
    )
    with TestClient(create_app(hung)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == {"status": "down", "error": "no answer within 1s"}
    assert checks["redis"]["status"] == "ok"

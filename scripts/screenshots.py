"""Take the README's console screenshots: docs/console-overview.png and docs/console-event.png.

    .venv/bin/python scripts/screenshots.py

A throwaway hub (SQLite and an embedded Redis in a temp dir) is filled with an hour of made-up
events, deliveries, attempts and a dead letter, served on loopback, and photographed by Debian's
chromium (`apt-get install chromium`) through Playwright. Nothing outside the temp dir is touched.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import orjson
import uvicorn
from playwright.sync_api import sync_playwright
from sqlalchemy import insert

from hub.app import create_app
from hub.core import dead_letters, ids, schema
from hub.core.crypto import Cipher
from hub.core.db import create_db_engine, session_factory
from hub.core.models import (
    DeadLetterStage,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointKind,
    EventStatus,
    IntegrationEvent,
    KeyKind,
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from hub.core.settings import Settings
from hub.ingress.apikeys import create_key
from hub.local.embedded import EmbeddedRedis
from hub.local.processes import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def fill(settings: Settings) -> tuple[str, str]:
    """Made-up traffic; returns (operator key, an event id worth showing)."""
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    cipher = Cipher.from_settings(settings)
    rng = random.Random(7)
    now = utcnow()
    with session_factory(engine).begin() as session:
        session.add(Tenant(slug="clinic-1", name="Clinic 1"))
        session.flush()
        key = create_key(session, name="ops", tenant_slug=None, kind=KeyKind.OPERATOR).secret
        for name in ("crm", "whatsapp"):
            session.add(
                WebhookEndpoint(
                    name=name,
                    kind=EndpointKind.WEBHOOK,
                    version=1,
                    checksum="shot",
                    definition={"kind": "webhook", "url": f"https://{name}.example/hooks"},
                )
            )
    shown = ""
    with engine.begin() as conn:
        tenant_id = 1
        for i in range(600):
            at = now - timedelta(seconds=rng.uniform(0, 3600))
            event_id = ids.new_id(ids.EVENT)
            payload = {"lead": {"id": 1000 + i, "name": "Ana Souza", "phone": "+55 11 98888-0000"}}
            conn.execute(
                insert(IntegrationEvent).values(
                    id=event_id,
                    tenant_id=tenant_id,
                    source="site",
                    external_id=f"lead-{1000 + i}",
                    event_type="lead.created",
                    status=EventStatus.PROCESSED,
                    payload=cipher.encrypt(orjson.dumps(payload)),
                    headers={"content-type": "application/json", "x-signature": "t=1,v1=abc"},
                    correlation_id=f"corr-{i}",
                    created_at=at,
                    updated_at=at,
                )
            )
            endpoint = "crm" if i % 3 else "whatsapp"
            delivery_id = ids.new_id(ids.DELIVERY)
            failed = i == 599
            conn.execute(
                insert(WebhookDelivery).values(
                    id=delivery_id,
                    event_id=event_id,
                    tenant_id=tenant_id,
                    mapping="lead-created",
                    route="0",
                    endpoint=endpoint,
                    queue="default",
                    status=DeliveryStatus.DEAD if failed else DeliveryStatus.DELIVERED,
                    attempts=1,
                    created_at=at,
                    updated_at=at,
                )
            )
            conn.execute(
                insert(DeliveryAttempt).values(
                    delivery_id=delivery_id,
                    number=1,
                    started_at=at,
                    duration_ms=int(rng.lognormvariate(4, 0.5)),
                    status_code=500 if failed else 200,
                    response_excerpt='{"error": "upstream down"}' if failed else '{"ok": true}',
                    outcome="dead" if failed else "delivered",
                )
            )
            if failed:
                shown = event_id
                dead_letters.create_many(
                    conn,
                    [
                        dead_letters.new_row(
                            tenant_id=tenant_id,
                            event_id=event_id,
                            delivery_id=delivery_id,
                            source="site",
                            endpoint=endpoint,
                            stage=DeadLetterStage.DELIVERY,
                            reason="permanent: HTTP 500",
                            attempts=1,
                        )
                    ],
                )
    engine.dispose()
    return key, shown


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis.sock", Path(tmp)) as redis,
    ):
        settings = Settings(
            database_url=f"sqlite:///{tmp}/hub.db",
            redis_url=redis.url,
            data_dir=Path(tmp),
            _env_file=None,  # type: ignore[call-arg]
        )
        key, event_id = fill(settings)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), port=port, log_level="error", ws="none")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/console/")
            page.fill("input[name=key]", key)
            page.click("button:has-text('Sign in')")
            page.wait_for_selector("svg.chart")
            page.screenshot(path=str(DOCS / "console-overview.png"), full_page=True)
            page.goto(f"{url}/console/events/{event_id}")
            page.screenshot(path=str(DOCS / "console-event.png"), full_page=True)
            browser.close()
        server.should_exit = True
        thread.join(10)
    print(f"wrote {DOCS / 'console-overview.png'} and {DOCS / 'console-event.png'}")


if __name__ == "__main__":
    main()

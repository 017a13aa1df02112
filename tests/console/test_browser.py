"""The console in a real browser: Debian's chromium, headless, driven by Playwright.

The web app runs under uvicorn on loopback in a thread; jobs run in a burst worker in the test,
as a worker process would run them. `.ci/run` installs chromium when it is missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from hub.app import create_app
from hub.core.models import IntegrationEvent
from hub.core.settings import Settings
from hub.local.processes import free_port
from tests.conftest import unavailable
from tests.delivery.conftest import TargetServer, World
from tests.ops.conftest import Keys, dead_delivery, work
from workers.context import WorkerContext

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def hub_url(settings: Settings, ctx: WorkerContext) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="error", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    found = context.new_page()
    found.set_default_timeout(10_000)
    yield found
    context.close()


def sign_in(page: Page, hub_url: str, key: str) -> None:
    page.goto(hub_url + "/console/")
    page.fill("input[name=key]", key)
    page.click("button:has-text('Sign in')")


def test_an_operator_finds_an_event_replays_its_dead_letter_and_pauses_the_endpoint(
    page: Page,
    hub_url: str,
    ctx: WorkerContext,
    world: World,
    target: TargetServer,
    keys: Keys,
) -> None:
    delivery_id = dead_delivery(ctx, world, target)  # a 500: dead after its one attempt
    with ctx.sessions() as session:
        event = session.scalars(select(IntegrationEvent)).one()

    sign_in(page, hub_url, keys.operator)
    expect(page.locator("h1")).to_contain_text("Overview")
    expect(page.locator("svg.chart")).to_have_count(2)

    page.click("header >> text=Events")
    page.fill("input[name=external_id]", event.external_id)
    page.click("text=Search")
    page.click(f"a:has-text('{event.id}')")
    delivery = page.locator(f"[data-delivery='{delivery_id}']")
    expect(delivery).to_contain_text("dead")
    expect(delivery).to_contain_text("500")

    page.click("header >> text=Dead letters")
    page.check("input[name=ids]")
    page.click("button:has-text('Replay…')")
    expect(page.locator("h1")).to_have_text("Replay 1 dead letter?")
    page.click("text=Yes, replay 1")
    expect(page.locator(".flash")).to_contain_text("replaying 1")
    work(ctx.redis)  # a worker runs the replay job: the target answers 200 now
    page.goto(f"{hub_url}/console/events/{event.id}")
    expect(delivery).to_contain_text("delivered")

    page.click("header >> text=Endpoints")
    page.click("text=Pause deliveries")
    expect(page.locator(".flash")).to_have_text("crm paused")
    expect(page.locator("[data-endpoint=crm]")).to_contain_text("paused")
    page.click("text=Resume deliveries")
    expect(page.locator(".flash")).to_contain_text("crm resumed")
    expect(page.locator("text=Pause deliveries")).to_be_visible()


def test_a_tenant_admin_gets_404_for_another_tenants_event(
    page: Page, hub_url: str, world: World, keys: Keys
) -> None:
    world.delivery("crm", {"n": 1})
    with world.ctx.sessions() as session:
        event_id = session.scalars(select(IntegrationEvent.id)).one()
    sign_in(page, hub_url, keys.other_admin)
    expect(page.locator("h1")).to_have_text("Events")
    answer = page.goto(f"{hub_url}/console/events/{event_id}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_contain_text("not found")

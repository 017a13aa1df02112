"""`hub demo`: signs each scenario as its source declares, and says clearly when no hub answers."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import stripe
from standardwebhooks import Webhook

from hub.core.errors import ConfigError, NotFound
from hub.ingress.sources import SignatureConfig, SourceConfig
from hub.local.demo import DeliveryView, EventView, Tally, build_request, follow, scenarios, sign
from hub.local.processes import free_port as _free_port
from hub.local.sink import new_secret


def test_demo_against_a_hub_that_is_down_says_which_url_it_tried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--url", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(tmp_path / ".hub")},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"hub: error: no hub answers at {url} (tried GET {url}/health); is `hub up` running?"
    ]


def test_the_four_scenarios_of_seed_003() -> None:
    titles = [s.title for s in scenarios("r1")]
    assert titles == [
        "lead from the site",
        "lead from WhatsApp",
        "client registered",
        "service completed",
    ]
    assert scenarios("r1")[1].payload["messageId"] != scenarios("r2")[1].payload["messageId"]
    assert scenarios("r1")[2].payload["id"] != scenarios("r2")[2].payload["id"]


def test_standard_webhooks_signing_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    config = SignatureConfig(scheme="standard-webhooks", secrets=["env:CRM_SECRET"])
    body = b'{"type": "client.registered"}'
    headers = sign(config, secret, "msg_1", body)
    assert Webhook(secret).verify(body, headers) == {"type": "client.registered"}


def test_stripe_signing_verifies_with_the_stripe_library() -> None:
    config = SignatureConfig(scheme="stripe", secrets=["env:FIN_SECRET"])
    body = b'{"type": "invoice.paid"}'
    headers = sign(config, "whsec_test", "msg_2", body)
    stripe.WebhookSignature.verify_header(
        body.decode(), headers["Stripe-Signature"], "whsec_test", tolerance=300
    )


def test_hmac_and_token_schemes_use_the_declared_header() -> None:
    hmac_config = SignatureConfig(
        scheme="hmac-sha256", secrets=["env:S"], header="X-Hub-Signature-256", prefix="sha256="
    )
    headers = sign(hmac_config, "s3cret", "m", b"{}")
    # GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!"
    github = SignatureConfig(
        scheme="hmac-sha256", secrets=["env:G"], header="X-Hub-Signature-256", prefix="sha256="
    )
    assert sign(github, "It's a Secret to Everybody", "m", b"Hello, World!") == {
        "X-Hub-Signature-256": "sha256="
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    }
    expected = "sha256=" + hmac.new(b"s3cret", b"{}", hashlib.sha256).hexdigest()
    assert headers == {"X-Hub-Signature-256": expected}
    token_config = SignatureConfig(scheme="token", secrets=["env:T"], header="Client-Token")
    assert sign(token_config, "tok", "m", b"{}") == {"Client-Token": "tok"}


def test_a_request_carries_the_declared_event_id_and_the_secret_from_demo_env() -> None:
    sources = {
        "crm": SourceConfig.model_validate(
            {
                "event_id": {"header": "webhook-id"},
                "signature": {
                    "scheme": "standard-webhooks",
                    "secrets": ["env:{TENANT}_CRM_WEBHOOK_SECRET"],
                },
            }
        )
    }
    secret = new_secret()
    client = next(s for s in scenarios("r3") if s.title == "client registered")
    request = build_request(client, sources, {}, {"DEMO_CRM_WEBHOOK_SECRET": secret}, "r3")
    assert request.source == "crm"
    assert request.headers["webhook-id"] == "msg_demo_r3_crm"
    assert Webhook(secret).verify(request.body, request.headers) == orjson.loads(request.body)


def test_a_missing_source_secret_names_the_variable() -> None:
    sources = {
        "site": SourceConfig.model_validate(
            {"signature": {"scheme": "token", "header": "X-Token", "secrets": ["env:SITE_TOKEN"]}}
        )
    }
    with pytest.raises(ConfigError, match="source site is signed .token. with SITE_TOKEN"):
        build_request(scenarios("r4")[0], sources, {}, {}, "r4")


# -- following an event ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 27, 21, 0, 0)


class ScriptedReader:
    """An EventReader that plays back snapshots of one event, the last one for ever."""

    def __init__(self, *views: EventView | None) -> None:
        self.views = list(views)

    def read(self, event_id: str) -> EventView:
        view = self.views.pop(0) if len(self.views) > 1 else self.views[0]
        if view is None:
            raise NotFound(event_id)
        return view


def _delivery(id_: str, route: str, status: str, **extra: Any) -> DeliveryView:
    return DeliveryView(id_, "service-completed", route, "whatsapp", status, **extra)


def _follow(reader: ScriptedReader) -> tuple[list[str], Tally]:
    lines: list[str] = []
    tally = Tally()
    follow(reader, "evt_1", tally, time.monotonic() + 5, lines.append, utcnow=lambda: NOW)
    return lines, tally


def test_follow_prints_each_change_and_the_delayed_delivery_due_time() -> None:
    later = NOW + timedelta(hours=2)
    pending = _delivery("dlv_1", "notify-client", "pending")
    delayed = _delivery("dlv_2", "feedback-request", "pending", next_attempt_at=later)
    reader = ScriptedReader(
        None,
        EventView("evt_1", "queued"),
        EventView("evt_1", "processed", (pending, delayed)),
        EventView("evt_1", "processed", (replace(pending, status="delivered"), delayed)),
    )
    lines, tally = _follow(reader)
    assert lines[0] == "     event queued"
    assert lines[1] == "     event processed · rules: service-completed"
    assert "… whatsapp   service-completed/notify-client" in lines[2]
    assert "⏲ whatsapp   service-completed/feedback-request" in lines[3]
    assert "scheduled for 2026-11-27 23:00:00 UTC (in 2h00m)" in lines[3]
    assert "✓ whatsapp   service-completed/notify-client" in lines[4]
    assert "delivered" in lines[4] and len(lines) == 5
    assert tally.ok and tally.arrived == 1 and list(tally.delayed) == ["dlv_2"]


def test_a_dead_delivery_is_a_problem_named_with_its_error() -> None:
    dead = _delivery("dlv_3", "notify-client", "dead", attempts=1, last_error="HTTP 410")
    lines, tally = _follow(ScriptedReader(EventView("evt_1", "processed", (dead,))))
    assert "✗ whatsapp" in lines[1] and "dead: HTTP 410" in lines[1]
    assert not tally.ok
    assert tally.problems == [
        "dlv_3 to whatsapp (service-completed/notify-client) is dead: HTTP 410"
    ]


def test_an_event_without_a_route_is_a_problem() -> None:
    _, tally = _follow(ScriptedReader(EventView("evt_1", "no_route")))
    assert tally.problems == ["event evt_1 matched no rule"] and not tally.ok

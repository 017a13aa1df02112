"""`hub demo`: signs each scenario as its source declares, and says clearly when no hub answers."""

from __future__ import annotations

import hashlib
import hmac
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import stripe
from standardwebhooks import Webhook

from hub.demo import build_request, scenarios, sign
from hub.errors import ConfigError
from hub.sink import new_secret
from hub.sources import SignatureConfig, SourceConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

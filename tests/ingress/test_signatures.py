"""Each incoming scheme verifies what the real libraries sign and refuses what they refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
import stripe
import svix
from starlette.datastructures import Headers

from hub.core.errors import ConfigError, InvalidSignature, StaleTimestamp
from hub.ingress.signatures import HmacSha256, StandardWebhooks, Stripe, Token, scheme_for

BODY = b'{"type":"invoice.paid","id":"inv_1","amount":1990}'
WHSEC = "whsec_" + base64.b64encode(b"financeiro-secret-0123456789abcd").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"the-previous-secret-0123456789ab").decode()


def std_headers(secret: str, body: bytes, timestamp: int, msg_id: str = "msg_1") -> Headers:
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
    )
    return Headers(
        {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    )


# -- Standard Webhooks ----------------------------------------------------------------------------


def test_standard_webhooks_accepts_what_the_standardwebhooks_library_signs() -> None:
    now = int(time.time())
    StandardWebhooks().verify(std_headers(WHSEC, BODY, now), BODY, [WHSEC], now)


def test_standard_webhooks_accepts_svix_headers_signed_by_the_svix_library() -> None:
    now = int(time.time())
    signature = svix.Webhook(WHSEC).sign("msg_2", datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = Headers({"svix-id": "msg_2", "svix-timestamp": str(now), "svix-signature": signature})
    StandardWebhooks().verify(headers, BODY, [WHSEC], now)


def test_standard_webhooks_and_the_library_agree_on_what_we_accept() -> None:
    now = int(time.time())
    headers = std_headers(WHSEC, BODY, now)
    standardwebhooks.Webhook(WHSEC).verify(BODY, dict(headers))  # the reference accepts it too
    StandardWebhooks().verify(headers, BODY, [WHSEC], now)


def test_standard_webhooks_accepts_any_secret_in_rotation() -> None:
    now = int(time.time())
    headers = std_headers(WHSEC_OLD, BODY, now)
    StandardWebhooks().verify(headers, BODY, [WHSEC, WHSEC_OLD], now)


def test_standard_webhooks_refuses_a_rotated_out_secret() -> None:
    now = int(time.time())
    headers = std_headers(WHSEC_OLD, BODY, now)
    with pytest.raises(InvalidSignature):
        StandardWebhooks().verify(headers, BODY, [WHSEC], now)


def test_standard_webhooks_refuses_a_tampered_body() -> None:
    now = int(time.time())
    headers = std_headers(WHSEC, BODY, now)
    with pytest.raises(InvalidSignature):
        StandardWebhooks().verify(headers, BODY.replace(b"1990", b"1"), [WHSEC], now)


def test_standard_webhooks_signature_covers_the_message_id() -> None:
    now = int(time.time())
    headers = dict(std_headers(WHSEC, BODY, now))
    headers["webhook-id"] = "msg_other"
    with pytest.raises(InvalidSignature):
        StandardWebhooks().verify(Headers(headers), BODY, [WHSEC], now)


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_standard_webhooks_refuses_timestamps_more_than_five_minutes_away(skew: int) -> None:
    now = int(time.time())
    headers = std_headers(WHSEC, BODY, now + skew)  # a correctly signed but replayed/future message
    with pytest.raises(StaleTimestamp):
        StandardWebhooks().verify(headers, BODY, [WHSEC], now)


def test_standard_webhooks_accepts_timestamps_within_five_minutes() -> None:
    now = int(time.time())
    StandardWebhooks().verify(std_headers(WHSEC, BODY, now - 299), BODY, [WHSEC], now)
    StandardWebhooks().verify(std_headers(WHSEC, BODY, now + 299), BODY, [WHSEC], now)


def test_standard_webhooks_refuses_missing_headers() -> None:
    with pytest.raises(InvalidSignature, match="webhook-id"):
        StandardWebhooks().verify(Headers({}), BODY, [WHSEC], time.time())


# -- generic HMAC-SHA256 --------------------------------------------------------------------------


def test_hmac_matches_githubs_published_example() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    scheme = scheme_for("hmac-sha256", header="X-Hub-Signature-256", prefix="sha256=")
    headers = Headers(
        {
            "X-Hub-Signature-256": "sha256="
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        }
    )
    scheme.verify(headers, b"Hello, World!", ["It's a Secret to Everybody"], time.time())


def test_hmac_meta_style_hex_with_prefix() -> None:
    secret = "meta-app-secret"
    digest = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    headers = Headers({"X-Hub-Signature-256": f"sha256={digest}"})
    HmacSha256(prefix="sha256=").verify(headers, BODY, ["older", secret], time.time())


def test_hmac_base64_without_prefix() -> None:
    secret = "shopify-style"
    digest = base64.b64encode(hmac.new(secret.encode(), BODY, hashlib.sha256).digest()).decode()
    scheme = scheme_for("hmac-sha256", header="X-Shop-Hmac-Sha256", encoding="base64")
    scheme.verify(Headers({"x-shop-hmac-sha256": digest}), BODY, [secret], time.time())


def test_hmac_refuses_a_tampered_body_a_wrong_secret_and_a_missing_prefix() -> None:
    secret = "meta-app-secret"
    digest = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    scheme = HmacSha256(prefix="sha256=")
    good = Headers({"X-Hub-Signature-256": f"sha256={digest}"})
    with pytest.raises(InvalidSignature):
        scheme.verify(good, BODY + b" ", [secret], time.time())
    with pytest.raises(InvalidSignature):
        scheme.verify(good, BODY, ["another"], time.time())
    with pytest.raises(InvalidSignature, match="sha256="):
        scheme.verify(Headers({"X-Hub-Signature-256": digest}), BODY, [secret], time.time())
    with pytest.raises(InvalidSignature, match="hex"):
        scheme.verify(Headers({"X-Hub-Signature-256": "sha256=zz"}), BODY, [secret], time.time())


# -- Stripe ---------------------------------------------------------------------------------------

STRIPE_SECRET = "whsec_stripe_test_secret"


def test_stripe_accepts_the_stripe_librarys_header() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), STRIPE_SECRET, timestamp=now
    )
    Stripe().verify(Headers({"Stripe-Signature": header}), BODY, [STRIPE_SECRET], now)


def test_stripe_agrees_with_the_stripe_librarys_verification() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), STRIPE_SECRET, timestamp=now
    )
    assert stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, tolerance=300)
    Stripe().verify(Headers({"Stripe-Signature": header}), BODY, [STRIPE_SECRET], now)
    tampered = BODY.replace(b"inv_1", b"inv_2")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(tampered, header, STRIPE_SECRET, tolerance=300)
    with pytest.raises(InvalidSignature):
        Stripe().verify(Headers({"Stripe-Signature": header}), tampered, [STRIPE_SECRET], now)


def test_stripe_accepts_several_v1_signatures_during_rotation() -> None:
    now = int(time.time())
    old = stripe.WebhookSignature.generate_signature_header(BODY.decode(), "whsec_old", now)
    new = stripe.WebhookSignature.generate_signature_header(BODY.decode(), STRIPE_SECRET, now)
    header = old + "," + new.split(",", 1)[1]  # t=..,v1=<old>,v1=<new>
    Stripe().verify(Headers({"Stripe-Signature": header}), BODY, [STRIPE_SECRET], now)


def test_stripe_refuses_a_stale_timestamp() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), STRIPE_SECRET, timestamp=now - 600
    )
    with pytest.raises(StaleTimestamp):
        Stripe().verify(Headers({"Stripe-Signature": header}), BODY, [STRIPE_SECRET], now)


def test_stripe_refuses_a_header_without_v1() -> None:
    now = int(time.time())
    with pytest.raises(InvalidSignature, match="v1"):
        Stripe().verify(Headers({"Stripe-Signature": f"t={now},v0=abcd"}), BODY, ["s"], now)


# -- static token ---------------------------------------------------------------------------------


def test_token_accepts_any_configured_token_and_refuses_others() -> None:
    scheme = scheme_for("token", header="Client-Token")
    scheme.verify(Headers({"Client-Token": "tok-2"}), BODY, ["tok-1", "tok-2"], time.time())
    with pytest.raises(InvalidSignature):
        scheme.verify(Headers({"Client-Token": "tok-3"}), BODY, ["tok-1", "tok-2"], time.time())
    with pytest.raises(InvalidSignature, match="Client-Token|client-token"):
        Token().verify(Headers({}), BODY, ["tok-1"], time.time())


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="hmac-sha256"):
        scheme_for("md5")

"""Alerts pushed out: the sweeper posts each new alert of `/status` to an endpoint, once.

With `HUB_ALERT_ENDPOINT` naming an endpoint of kind webhook (from endpoints.yaml, applied), the
sweeper task `post_alerts` takes a status snapshot every `HUB_ALERT_INTERVAL` seconds (one
sweeper in the installation does it, whichever gets the Redis lock) and POSTs every alert not
posted yet: `{"type": "hub.alert", "alert": {key, kind, message}, "at": ...}`, signed per
Standard Webhooks when the endpoint has a signing secret. An alert is posted once while it lasts;
when it clears it is forgotten, so it is posted again if it comes back. The endpoint's URL and
secret are resolved without a tenant (`env:NAME`, no `{TENANT}`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.core import envrefs, ids
from hub.core.context import SweepContext
from hub.core.errors import ConfigError, HubError, RedisUnavailable
from hub.core.models import EndpointKind, WebhookEndpoint, utcnow
from hub.core.queues import ALERTS_ACTIVE_KEY, ALERTS_TURN_KEY
from hub.delivery.endpoints import EndpointConfig

log = logging.getLogger("hub.ops.alerts")


def _endpoint(ctx: SweepContext, name: str) -> EndpointConfig:
    with Session(ctx.engine) as session:
        definition = session.scalar(
            select(WebhookEndpoint.definition)
            .where(WebhookEndpoint.name == name, WebhookEndpoint.active.is_(True))
            .order_by(WebhookEndpoint.version.desc())
            .limit(1)
        )
    if definition is None:
        raise ConfigError(f"HUB_ALERT_ENDPOINT: no endpoint {name!r} applied")
    try:
        config = EndpointConfig.model_validate(definition)
    except ValidationError as exc:
        raise ConfigError(f"HUB_ALERT_ENDPOINT: endpoint {name!r} is invalid") from exc
    if config.kind != EndpointKind.WEBHOOK:
        raise ConfigError(f"HUB_ALERT_ENDPOINT: endpoint {name!r} must be of kind webhook")
    return config


def _post(config: EndpointConfig, alert: dict[str, Any]) -> None:
    from hub.core.signing import sign_standard_webhooks, signing_key

    url = envrefs.resolve(config.url or "", where="HUB_ALERT_ENDPOINT url")
    body = orjson.dumps({"type": "hub.alert", "alert": alert, "at": utcnow().isoformat() + "Z"})
    msg_id = ids.new_id("alr")
    stamp = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": msg_id}
    headers["webhook-timestamp"] = str(stamp)
    if config.signing_secret:
        secret = envrefs.resolve(config.signing_secret, where="HUB_ALERT_ENDPOINT signing_secret")
        headers["webhook-signature"] = sign_standard_webhooks(
            signing_key(secret), msg_id, stamp, body
        )
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=config.timeout)
    except httpx.HTTPError as exc:
        raise HubError(f"alert endpoint unreachable ({type(exc).__name__})") from exc
    if response.status_code >= 300:
        raise HubError(f"alert endpoint answered {response.status_code}")


def post_alerts(ctx: SweepContext) -> int:
    """Sweeper task: post alerts not posted yet; returns how many were posted."""
    from hub.ops.status import collect

    settings = ctx.settings
    if not settings.alert_endpoint:
        return 0
    try:
        if settings.alert_interval > 0:
            interval_ms = max(int(settings.alert_interval * 1000), 1)
            if not ctx.redis.set(ALERTS_TURN_KEY, b"1", nx=True, px=interval_ms):
                return 0
        snapshot = collect(ctx.engine, ctx.redis, settings)
        current = {a["key"]: a for a in snapshot["alerts"]}
        members = ctx.redis.smembers(ALERTS_ACTIVE_KEY)
        posted = {k.decode() if isinstance(k, bytes) else k for k in members}
        cleared = posted - set(current)
        if cleared:
            ctx.redis.srem(ALERTS_ACTIVE_KEY, *cleared)
        fresh = [alert for key, alert in current.items() if key not in posted]
        if not fresh:
            return 0
        config = _endpoint(ctx, settings.alert_endpoint)
        sent = 0
        for alert in fresh:
            _post(config, alert)
            ctx.redis.sadd(ALERTS_ACTIVE_KEY, alert["key"])
            log.warning("alert.posted", extra={"reason": alert["key"]})
            sent += 1
        return sent
    except RedisError as exc:
        raise RedisUnavailable(f"alerts: {exc}") from exc

"""Meta's webhooks (WhatsApp Cloud API): the subscription handshake and the source preset.

Handshake: when a callback URL is saved in Meta's app dashboard, Meta calls

    GET /webhooks/{source}?hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<n>

and expects the challenge echoed as the body of a 200. `check_handshake` compares the token in
constant time with every verify token in force for the tenant; anything else is a 403.

Preset `whatsapp_cloud`: a notification is

    {"object": "whatsapp_business_account",
     "entry": [{"id": "<WABA>", "changes": [{"field": "messages", "value": {
         "messaging_product": "whatsapp", "metadata": {...},
         "messages": [{"id": "wamid...", "from": "5511...", "type": "text", ...}]   # or
         "statuses": [{"id": "wamid...", "status": "delivered", "recipient_id": ...}]}}]}]}

and the event is its first message or status: type `whatsapp.message.received` with the message
id, or `whatsapp.status.<status>` with `<message id>:<status>` (a message's sent, delivered and
read statuses are three events). Anything else (an account update) is `whatsapp.<field>` and is
identified by the SHA-256 of the body.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from hub.core.errors import VerificationRefused

MESSAGE_RECEIVED = "whatsapp.message.received"


def check_handshake(params: Mapping[str, str], tokens: Sequence[str]) -> str:
    """The challenge to echo; VerificationRefused unless mode and verify token are right."""
    if params.get("hub.mode") != "subscribe":
        raise VerificationRefused("not a subscription request (hub.mode must be subscribe)")
    given = (params.get("hub.verify_token") or "").encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode())
    if not given or not matched:
        raise VerificationRefused("hub.verify_token does not match this source's verify token")
    challenge = params.get("hub.challenge")
    if not challenge:
        raise VerificationRefused("hub.challenge is missing")
    return challenge


def _first_change(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    for entry in body.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            if isinstance(change, dict):
                return change
    return {}


def _first(value: dict[str, Any], name: str) -> dict[str, Any] | None:
    items = value.get(name)
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return None


def event_type(_headers: Any, body: Any) -> str | None:
    change = _first_change(body)
    value = change.get("value") if isinstance(change.get("value"), dict) else {}
    assert isinstance(value, dict)
    if _first(value, "messages") is not None:
        return MESSAGE_RECEIVED
    status = _first(value, "statuses")
    if status is not None and status.get("status"):
        return f"whatsapp.status.{status['status']}"
    field = change.get("field")
    return f"whatsapp.{field}" if isinstance(field, str) and field else None


def event_id(_headers: Any, body: Any) -> str | None:
    change = _first_change(body)
    value = change.get("value") if isinstance(change.get("value"), dict) else {}
    assert isinstance(value, dict)
    message = _first(value, "messages")
    if message is not None and message.get("id"):
        return str(message["id"])
    status = _first(value, "statuses")
    if status is not None and status.get("id"):
        return f"{status['id']}:{status.get('status', '')}"
    return None  # the body's SHA-256 then

"""WhatsApp through Meta's Cloud API: `POST {url}/{api_version}/{phone_number_id}/messages`.

The route's body is one of

    {to: "5511912345678", text: "Olá!"}                                  a text message
    {to: ..., whatsapp_template: {name: lembrete, language: pt_BR, components: [...]}}
                                        a template (`template` is a word of the mapping language)
    {to: ..., type: image, image: {...}}                                 any other Graph type

and the adapter sends the Graph API's shape (`messaging_product: whatsapp`, ...) with the
endpoint's bearer token. Meta answers errors as `{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}`; `classify_graph` decides what is worth another attempt:
throttling (HTTP 429, codes 4, 80007, 130429, 131056) and Meta's own failures (5xx, codes 1, 2,
131000, 131016) are retried, honouring Retry-After; an expired or revoked token (401, code 190)
and anything else the request itself got wrong are permanent.
"""

from __future__ import annotations

from typing import Any

import orjson

from hub.core.errors import ConfigError
from hub.delivery.adapters import (
    DeliveryRef,
    Outcome,
    OutgoingRequest,
    Target,
    Verdict,
    clip,
    config_failure,
    send_http,
)
from hub.delivery.endpoints import GRAPH_API
from hub.delivery.retry import parse_retry_after
from hub.delivery.senders import Senders

THROTTLED = frozenset({4, 80007, 130429, 131056})  # app, account, pair rate limits
META_FAILURE = frozenset({1, 2, 131000, 131016})  # unknown error, service down, overloaded
TOKEN_INVALID = 190


class WhatsAppCloudAdapter:
    def __init__(self, senders: Senders) -> None:
        self.senders = senders

    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        config = endpoint.config
        try:
            message = graph_message(request.body)
        except ValueError as exc:
            return Outcome(Verdict.DEAD, error_class="bad_request", error=str(exc))
        try:
            base = endpoint.value("url", config.url) or GRAPH_API
            phone_id = endpoint.value("phone_number_id", config.phone_number_id)
            token = endpoint.value("token", config.token)
        except ConfigError as exc:
            return config_failure(exc)
        url = f"{base.rstrip('/')}/{config.api_version}/{phone_id}/messages"
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        if delivery.correlation_id:
            headers["X-Correlation-Id"] = delivery.correlation_id
        answer = send_http(
            self.senders, "POST", url, headers, orjson.dumps(message), config.timeout
        )
        if isinstance(answer, Outcome):
            return answer
        return classify_graph(answer.status, answer.text, answer.retry_after)


def graph_message(body: Any) -> dict[str, Any]:
    """The Graph API's message for the route's body; ValueError says what is missing."""
    if not isinstance(body, dict) or not body.get("to"):
        raise ValueError("body needs to (the recipient's phone) and text or template")
    out: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": str(body["to"]),
    }
    if body.get("text") is not None:
        text = body["text"]
        out["type"] = "text"
        out["text"] = text if isinstance(text, dict) else {"body": str(text)}
        return out
    template = body.get("whatsapp_template") or body.get("template")
    if isinstance(template, dict):
        if not template.get("name"):
            raise ValueError("body.whatsapp_template needs name")
        language = template.get("language") or "pt_BR"
        shaped: dict[str, Any] = {
            "name": str(template["name"]),
            "language": language if isinstance(language, dict) else {"code": str(language)},
        }
        if template.get("components"):
            shaped["components"] = template["components"]
        out["type"] = "template"
        out["template"] = shaped
        return out
    kind = body.get("type")
    if isinstance(kind, str) and isinstance(body.get(kind), dict):
        out["type"] = kind
        out[kind] = body[kind]
        return out
    raise ValueError("body needs text or template (or type and its object)")


def classify_graph(status: int, text: str | None, retry_after: str | None = None) -> Outcome:
    """Meta's answer: 2xx with a message id is sent; `{"error": {...}}` is classified by code."""
    excerpt = clip(text)
    error: dict[str, Any] = {}
    try:
        data = orjson.loads(text or b"{}")
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
    except orjson.JSONDecodeError:
        pass
    if 200 <= status < 300 and not error:
        return Outcome(Verdict.DELIVERED, status, excerpt=excerpt)
    code = error.get("code")
    reason = f"HTTP {status}" + (f" code {code}: {error.get('message', '')}" if code else "")
    reason = reason[:200]
    after = parse_retry_after(retry_after)
    if status == 429 or code in THROTTLED:
        return Outcome(Verdict.RETRY, status, "whatsapp_throttled", reason, excerpt, after)
    if status >= 500 or code in META_FAILURE or status == 408:
        return Outcome(Verdict.RETRY, status, f"http_{status}", reason, excerpt, after)
    if status == 401 or code == TOKEN_INVALID:
        return Outcome(Verdict.DEAD, status, "whatsapp_auth", reason, excerpt)
    return Outcome(Verdict.DEAD, status, "whatsapp_rejected", reason, excerpt)

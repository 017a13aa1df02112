"""Adapters: the one place a delivery leaves hub, behind `Adapter.send(request, endpoint, ...)`.

- webhook: HTTP on libcurl with a kept-alive connection per sending thread (hub.delivery.senders),
  signed per Standard Webhooks (`webhook-id` = the delivery id, the same on every retry);
- zapi: Z-API's `POST {base}/instances/{instance}/token/{token}/send-text` with `Client-Token`;
- email: SMTP (smtplib), STARTTLS and login when configured.

The other kinds live in their own modules (whatsapp_cloud, amqp, calendar); hub.delivery.kinds
holds one adapter per kind for a process. Each returns an `Outcome`: delivered, retry (worth
another attempt) or dead (permanent), with the status code, a short excerpt of the answer and an
error class. Only the adapters catch the senders' `SendFailed`, `httpx.*`, `smtplib.*` and
`pika.*` exceptions; none raises for a failed send.
"""

from __future__ import annotations

import enum
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import orjson

from hub.core import envrefs
from hub.core.errors import ConfigError, EgressRefused
from hub.core.signing import sign_standard_webhooks, signing_key
from hub.delivery.egress import EgressPolicy
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.retry import RETRY_AFTER_STATUS, is_retryable_status, parse_retry_after
from hub.delivery.senders import Answer, Senders, SendFailed

EXCERPT_CHARS = 200


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    status_code: int | None = None
    error_class: str | None = None  # timeout, connection_error, http_503, zapi_not_connected, …
    error: str | None = None  # one line for last_error / the dead letter's reason
    excerpt: str | None = None
    retry_after: float | None = None

    @property
    def is_endpoint_failure(self) -> bool:
        """Whether this says the endpoint is unwell (counts towards opening its circuit)."""
        return self.verdict == Verdict.RETRY


@dataclass(frozen=True)
class OutgoingRequest:
    """What the route built (stored encrypted in `webhook_deliveries.request`)."""

    body: Any
    method: str | None = None
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # amqp, google_calendar: route settings

    @classmethod
    def from_json(cls, raw: bytes) -> OutgoingRequest:
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutgoingRequest:
        return cls(
            body=data.get("body"),
            method=data.get("method"),
            path=data.get("path"),
            headers=dict(data.get("headers") or {}),
            options=dict(data.get("options") or {}),
        )


@dataclass(frozen=True)
class Target:
    """An endpoint as this delivery's tenant sees it: `env:` references resolve per tenant."""

    name: str
    config: EndpointConfig
    tenant_slug: str | None = None
    secrets: envrefs.SecretLookup | None = None  # for `secret:` references

    def value(self, field_name: str, raw: str | None) -> str | None:
        if raw is None:
            return None
        where = f"endpoint {self.name}.{field_name}"
        return envrefs.resolve(raw, self.tenant_slug, where=where, secrets=self.secrets)


@dataclass(frozen=True)
class DeliveryRef:
    id: str
    attempt: int  # 1-based number of this attempt
    correlation_id: str | None = None


class Adapter(Protocol):
    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        """Try once; never raises for a failed send."""
        ...


# -- helpers (shared by the adapters of hub.delivery.kinds) ---------------------------------------


def clip(text: str | None) -> str | None:
    if not text:
        return None
    flat = " ".join(text.split())
    return flat[:EXCERPT_CHARS]


def http_outcome(status: int, excerpt: str | None, retry_after: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, status, excerpt=excerpt)
    after = parse_retry_after(retry_after) if status in RETRY_AFTER_STATUS else None
    verdict = Verdict.RETRY if is_retryable_status(status) else Verdict.DEAD
    return Outcome(
        verdict,
        status,
        error_class=f"http_{status}",
        error=f"HTTP {status}",
        excerpt=excerpt,
        retry_after=after,
    )


def send_failure(exc: SendFailed) -> Outcome:
    """A send that got no answer: a timeout or a connection error is worth another attempt, a
    URL that cannot be sent to is not."""
    verdict = Verdict.DEAD if exc.kind == "invalid_url" else Verdict.RETRY
    return Outcome(verdict, error_class=exc.kind, error=exc.message)


def egress_failure(exc: EgressRefused) -> Outcome:
    """The target's address is closed to deliveries: permanent until the policy changes."""
    return Outcome(Verdict.DEAD, error_class="egress_refused", error=exc.message[:200])


def config_failure(exc: ConfigError) -> Outcome:
    return Outcome(Verdict.DEAD, error_class="config", error=exc.message[:200])


def send_http(
    senders: Senders, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
) -> Answer | Outcome:
    """The answer, or the outcome of a send that got none (no connection, timeout, refused by
    the egress policy)."""
    try:
        return senders.send(method, url, headers, body, timeout)
    except SendFailed as exc:
        return send_failure(exc)
    except EgressRefused as exc:
        return egress_failure(exc)


# -- webhook --------------------------------------------------------------------------------------


class WebhookAdapter:
    def __init__(self, senders: Senders) -> None:
        self.senders = senders

    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        config = endpoint.config
        try:
            url = join_url(endpoint.value("url", config.url) or "", request.path)
            headers = {
                name: endpoint.value(f"headers.{name}", v) or ""
                for name, v in config.headers.items()
            }
            secret = endpoint.value("signing_secret", config.signing_secret)
            key = signing_key(secret) if secret else None
        except ConfigError as exc:
            return config_failure(exc)
        headers.update(request.headers)
        body = orjson.dumps(request.body)
        timestamp = int(time.time())
        headers["content-type"] = "application/json"
        headers["webhook-id"] = delivery.id
        headers["webhook-timestamp"] = str(timestamp)
        if key is not None:
            headers["webhook-signature"] = sign_standard_webhooks(key, delivery.id, timestamp, body)
        if delivery.correlation_id:
            headers["X-Correlation-Id"] = delivery.correlation_id
        method = (request.method or config.method).upper()
        answer = send_http(self.senders, method, url, headers, body, config.timeout)
        if isinstance(answer, Outcome):
            return answer
        return http_outcome(answer.status, clip(answer.text), answer.retry_after)


def join_url(base: str, path: str | None) -> str:
    if not path:
        return base
    return base.rstrip("/") + "/" + path.lstrip("/")


# -- zapi -----------------------------------------------------------------------------------------

# Z-API answers errors as {"error": "..."}: these say "try later", the rest are permanent.
ZAPI_TRANSIENT = ("not connected", "restore the session", "timeout on send", "error on send")


class ZapiAdapter:
    def __init__(self, senders: Senders) -> None:
        self.senders = senders

    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        config = endpoint.config
        body = request.body if isinstance(request.body, dict) else {}
        if not body.get("phone") or not body.get("message"):
            return Outcome(
                Verdict.DEAD, error_class="bad_request", error="body needs phone and message"
            )
        try:
            base = endpoint.value("url", config.url) or ""
            instance = endpoint.value("instance", config.instance)
            token = endpoint.value("token", config.token)
            client_token = endpoint.value("client_token", config.client_token)
        except ConfigError as exc:
            return config_failure(exc)
        url = f"{base.rstrip('/')}/instances/{instance}/token/{token}/send-text"
        headers = {"content-type": "application/json"}
        if client_token:
            headers["Client-Token"] = client_token
        if delivery.correlation_id:
            headers["X-Correlation-Id"] = delivery.correlation_id
        payload = orjson.dumps({"phone": str(body["phone"]), "message": str(body["message"])})
        answer = send_http(self.senders, "POST", url, headers, payload, config.timeout)
        if isinstance(answer, Outcome):
            return answer
        return classify_zapi(answer.status, answer.text, answer.retry_after)


def classify_zapi(status: int, text: str | None, retry_after: str | None = None) -> Outcome:
    """Z-API's answer: 2xx with a message id is sent; `{"error": ...}` is classified by text."""
    error = None
    try:
        data = orjson.loads(text or b"{}")
        if isinstance(data, dict):
            error = data.get("error") or (data.get("message") if status >= 400 else None)
    except orjson.JSONDecodeError:
        data = None
    excerpt = clip(text)
    if 200 <= status < 300 and not error:
        return Outcome(Verdict.DELIVERED, status, excerpt=excerpt)
    reason = str(error or f"HTTP {status}")[:200]
    lowered = reason.lower()
    if any(mark in lowered for mark in ZAPI_TRANSIENT):
        return Outcome(Verdict.RETRY, status, "zapi_not_connected", reason, excerpt)
    if status in (401, 403) or "token" in lowered:
        return Outcome(Verdict.DEAD, status, "zapi_auth", reason, excerpt)
    if status == 404 or "instance not found" in lowered:
        return Outcome(Verdict.DEAD, status, "zapi_not_found", reason, excerpt)
    if status >= 300 and is_retryable_status(status):
        after = parse_retry_after(retry_after) if status in RETRY_AFTER_STATUS else None
        return Outcome(Verdict.RETRY, status, f"http_{status}", reason, excerpt, after)
    return Outcome(Verdict.DEAD, status, "zapi_rejected", reason, excerpt)


# -- email ----------------------------------------------------------------------------------------


def smtp_port(endpoint: Target) -> int:
    """The endpoint's SMTP port: a number, an `env:` reference (SMTP_PORT), or 587/25."""
    config = endpoint.config
    if isinstance(config.port, str):
        raw = endpoint.value("port", config.port) or ""
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise ConfigError(f"endpoint {endpoint.name}.port: {raw!r} is not a port number")
        return int(raw)
    return config.port or (587 if config.starttls else 25)


class _CheckedSMTP(smtplib.SMTP):
    """smtplib.SMTP connecting only where the egress policy allows (STARTTLS still checks the
    server's certificate against the host name)."""

    def __init__(self, policy: EgressPolicy, host: str, port: int, timeout: float) -> None:
        self.policy = policy
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.policy.connect(host, port, timeout)


class EmailAdapter:
    def __init__(self, egress: EgressPolicy | None = None) -> None:
        self.egress = egress or EgressPolicy()

    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        config = endpoint.config
        body = request.body if isinstance(request.body, dict) else {}
        to = body.get("to")
        recipients = [to] if isinstance(to, str) else list(to or [])
        if not recipients or not body.get("subject") or not (body.get("text") or body.get("html")):
            return Outcome(
                Verdict.DEAD, error_class="bad_request", error="body needs to, subject, text"
            )
        try:
            host = endpoint.value("host", config.host) or ""
            username = endpoint.value("username", config.username)
            password = endpoint.value("password", config.password)
            from_addr = endpoint.value("from_addr", config.from_addr) or ""
            port = smtp_port(endpoint)
        except ConfigError as exc:
            return config_failure(exc)
        message = EmailMessage()
        message["From"] = from_addr
        message["To"] = ", ".join(str(r) for r in recipients)
        message["Subject"] = str(body["subject"])
        message["Message-ID"] = f"<{delivery.id}@hub>"  # the same on every retry
        if delivery.correlation_id:
            message["X-Correlation-Id"] = delivery.correlation_id
        message.set_content(str(body.get("text") or ""))
        if body.get("html"):
            message.add_alternative(str(body["html"]), subtype="html")
        try:
            with _CheckedSMTP(self.egress, host, port, timeout=config.timeout) as smtp:
                if config.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if username:
                    smtp.login(username, password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            transient = any(400 <= code < 500 for code in codes)
            verdict = Verdict.RETRY if transient else Verdict.DEAD
            return Outcome(verdict, min(codes), "smtp_recipients_refused", "recipients refused")
        except smtplib.SMTPResponseException as exc:
            verdict = Verdict.RETRY if 400 <= exc.smtp_code < 500 else Verdict.DEAD
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            return Outcome(verdict, exc.smtp_code, f"smtp_{exc.smtp_code}", clip(text), clip(text))
        except EgressRefused as exc:
            return egress_failure(exc)
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome(Verdict.DEAD, error_class="smtp_not_supported", error=str(exc)[:200])
        except ssl.SSLError as exc:
            return Outcome(Verdict.RETRY, error_class="tls_error", error=str(exc)[:200])
        except (smtplib.SMTPException, OSError) as exc:
            error_class = "timeout" if isinstance(exc, TimeoutError) else "connection_error"
            return Outcome(
                Verdict.RETRY,
                error_class=error_class,
                error=f"{type(exc).__name__}: {str(exc)[:160]}",
            )
        if refused:
            return Outcome(
                Verdict.DEAD, error_class="smtp_recipients_refused", error="some recipients refused"
            )
        return Outcome(Verdict.DELIVERED, 250)

"""Every error hub raises on purpose.

    HubError                         exit_code 2 (CLI); status_code 500 / code "internal" (HTTP)
    ├── ReplayFailed                 a replayed delivery or event failed again (fails its RQ job)
    ├── SyncFailed                   a sync run gave up: its source misbehaved past the retries
    ├── SyncBusy                     a sync job is already queued or running (no overlap)
    ├── ConfigError                  a setting or a config file is wrong
    │   ├── SettingError             one HUB_* setting is unusable (names the setting)
    │   ├── MappingsError            mappings/ has problems (each with file, line and path)
    │   └── SignatureNotConfigured   none of a source's signing secrets is set for the tenant
    ├── ServiceUnavailable           503: a backing service is down
    │   ├── DatabaseUnavailable      the database cannot be reached
    │   └── RedisUnavailable         Redis cannot be reached
    ├── NotFound                     404: an id or a name that does not exist
    │   ├── DeadLetterNotFound       no dead letter has this id
    │   ├── UnknownTenant            no tenant has this slug (names the closest one)
    │   ├── UnknownSecret            the tenant has no secret of this name
    │   └── UnknownSource            no such source in mappings/sources.yaml
    ├── TransformError               a payload does not fit a rule (fails that event alone)
    ├── EgressRefused                a delivery's target address is outside the egress policy
    └── RequestError                 4xx answers of the HTTP API (docs/architecture.md, HTTP API)
        ├── Unauthorized             401: missing or bad key, bad signature
        │   ├── MissingApiKey        no key in X-API-Key, Authorization: Bearer or ?api_key=
        │   ├── InvalidApiKey        unknown, wrong, revoked or expired key
        │   ├── InvalidSignature     the signature does not match any of the source's secrets
        │   └── StaleTimestamp       a signed timestamp more than 5 minutes off
        ├── Forbidden                403: key not allowed here
        │   ├── SourceNotAllowed     the key is limited to other sources (or is an operator key)
        │   ├── AddressNotAllowed    the client address is outside the source's allowed_ips
        │   └── VerificationRefused  Meta's subscription handshake: wrong mode or verify token
        ├── PayloadTooLarge          413
        ├── UnsupportedMediaType     415
        ├── BadRequest               400
        │   ├── InvalidJson          the body is not valid JSON (message names the position)
        │   └── MissingEventField    the declared event id or type is absent from the request
        ├── DeadLetterClosed         409: the dead letter was already replayed or discarded
        ├── TenantExists             409: a tenant already has this slug
        └── RateLimited              429 (carries retry_after)

Foreign exceptions are translated where they enter (`raise DatabaseUnavailable(...) from exc`).
Errors for HTTP carry `status_code` and `code`; errors for the shell carry `exit_code`.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of hub's errors."""

    status_code: int = 500
    code: str = "internal"
    exit_code: int = 2

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(HubError):
    """A setting or a configuration file is wrong."""

    code = "config_error"


class SettingError(ConfigError):
    """One HUB_* setting is unusable."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class MappingsError(ConfigError):
    """The mappings directory has problems; `problems` lists each as 'file:line path: message'."""

    def __init__(self, problems: list[str]) -> None:
        count = len(problems)
        head = f"{count} problem{'s' if count != 1 else ''} in mappings"
        super().__init__(head + ":\n" + "\n".join(problems))
        self.problems = problems


class SignatureNotConfigured(ConfigError):
    """None of the source's signing secrets is set for this tenant (the server's fault: 500)."""

    code = "signature_not_configured"


class ServiceUnavailable(HubError):
    """A backing service is down."""

    status_code = 503
    code = "service_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached."""

    code = "database_unavailable"


class RedisUnavailable(ServiceUnavailable):
    """Redis cannot be reached."""

    code = "redis_unavailable"


class NotFound(HubError):
    """An id or a name that does not exist."""

    status_code = 404
    code = "not_found"


class DeadLetterNotFound(NotFound):
    """No dead letter has this id."""

    code = "dead_letter_not_found"


class UnknownTenant(NotFound):
    """No tenant has this slug; the message names the closest existing one."""

    code = "unknown_tenant"


class UnknownSource(NotFound):
    """No such source in mappings/sources.yaml."""

    code = "unknown_source"


class UnknownSecret(NotFound):
    """The tenant has no secret of this name."""

    code = "unknown_secret"


class TransformError(HubError):
    """A payload does not fit a rule: a required value is missing or a function rejects it."""

    status_code = 422
    code = "transform_failed"


class RequestError(HubError):
    """A 4xx answer of the HTTP API."""

    status_code = 400
    code = "bad_request"


class Unauthorized(RequestError):
    """Missing or bad API key, or a bad signature."""

    status_code = 401
    code = "unauthorized"


class MissingApiKey(Unauthorized):
    """No key in X-API-Key, Authorization: Bearer or ?api_key=."""

    code = "missing_api_key"


class InvalidApiKey(Unauthorized):
    """The key is unknown, wrong, revoked or expired."""

    code = "invalid_api_key"


class InvalidSignature(Unauthorized):
    """The signature is missing or matches none of the source's secrets."""

    code = "invalid_signature"


class StaleTimestamp(Unauthorized):
    """A signed timestamp is more than the tolerance (5 minutes) away from now."""

    code = "stale_timestamp"


class Forbidden(RequestError):
    """The key may not be used here."""

    status_code = 403
    code = "forbidden"


class SourceNotAllowed(Forbidden):
    """The key may not send to this source (limited to others, or an operator key)."""

    code = "source_not_allowed"


class AddressNotAllowed(Forbidden):
    """The client address is outside the source's allowed_ips."""

    code = "address_not_allowed"


class VerificationRefused(Forbidden):
    """`GET /webhooks/{source}`: not a subscription, or the verify token does not match."""

    code = "verification_refused"


class PayloadTooLarge(RequestError):
    """The body is larger than the source allows."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    """The body is not JSON."""

    status_code = 415
    code = "unsupported_media_type"


class BadRequest(RequestError):
    """The request cannot be understood (invalid JSON, bad parameters)."""

    status_code = 400
    code = "bad_request"


class InvalidJson(BadRequest):
    """The body is not valid JSON; the message names the parser's position."""

    code = "invalid_json"


class MissingEventField(BadRequest):
    """The event id or type the source declares is absent from the request."""

    code = "missing_event_field"


class DeadLetterClosed(RequestError):
    """The dead letter was already replayed or discarded."""

    status_code = 409
    code = "dead_letter_closed"


class TenantExists(RequestError):
    """A tenant already has this slug."""

    status_code = 409
    code = "tenant_exists"


class RateLimited(RequestError):
    """Too many requests; `retry_after` seconds until the next one is accepted."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EgressRefused(HubError):
    """A delivery's target resolves to an address the egress policy does not allow."""

    code = "egress_refused"


class ReplayFailed(HubError):
    """A replayed delivery or event failed again; its RQ job fails so it can be requeued."""

    code = "replay_failed"


class SyncFailed(HubError):
    """A sync run gave up (the source system kept failing, or answered a permanent error)."""

    code = "sync_failed"


class SyncBusy(HubError):
    """A sync job is queued or running: runs of one job never overlap."""

    status_code = 409
    code = "sync_busy"

"""The tables of docs/architecture.md as SQLAlchemy 2 typed models, with their status enums.

The unique constraints carry the promises:
- one event per (tenant, source, external id)           uq_events_tenant_source_external
- one delivery per (event, mapping, route)              uq_deliveries_event_mapping_route
- one retry_queue row per delivery                      uq_retry_queue_delivery
Indexes at least as seed 003 recommends. Times are naive UTC, microsecond precision.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

# -- column types shared by both databases -------------------------------------------------------

Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
BigId = BigInteger().with_variant(Integer(), "sqlite")
# case- and accent-sensitive on MySQL too: "evt_Ab" and "evt_aB" are different events
ExternalId = String(255).with_variant(
    mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
)
PublicId = String(32)  # evt_ / dlv_ / dlq_ + 26 chars, see hub.core.ids
DEFAULT_TIMEZONE = "America/Sao_Paulo"  # a tenant's, until it sets its own
DEFAULT_LOCALE = "pt-BR"


def utcnow() -> datetime:
    """Naive UTC now: what every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def status_type(enum_cls: type[enum.Enum], length: int = 16) -> TypeEngine[Any]:
    """A str enum stored as VARCHAR (no native ENUM: adding a state needs no table rebuild)."""
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


# -- statuses -------------------------------------------------------------------------------------


class EventStatus(enum.StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    PROCESSED = "processed"
    NO_ROUTE = "no_route"
    FAILED = "failed"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"
    PAUSED = "paused"  # its endpoint is paused: waits, untried, until `hub.delivery.pauses.resume`


class DeadLetterStatus(enum.StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class DeadLetterStage(enum.StrEnum):
    INGEST = "ingest"
    MAPPING = "mapping"
    DELIVERY = "delivery"


class KeyKind(enum.StrEnum):
    INGEST = "ingest"  # may POST webhooks for its tenant
    ADMIN = "admin"  # ingest + /admin/* for its own tenant
    OPERATOR = "operator"  # every tenant, /status, /rq


class EndpointKind(enum.StrEnum):
    WEBHOOK = "webhook"
    ZAPI = "zapi"
    EMAIL = "email"
    WHATSAPP_CLOUD = "whatsapp_cloud"
    AMQP = "amqp"
    GOOGLE_CALENDAR = "google_calendar"


class SyncJobStatus(enum.StrEnum):
    IDLE = "idle"  # waiting for next_run_at
    QUEUED = "queued"  # claimed by a sweeper (or the CLI), its run job enqueued on `low`
    RUNNING = "running"  # a worker holds the lease
    FAILED = "failed"  # the last run failed; it runs again at next_run_at


class SyncRunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # complete: the high-water mark advanced
    FAILED = "failed"  # the source misbehaved past its retries, or the worker died (lease)


class Base(DeclarativeBase):
    pass


# -- tenants and access ---------------------------------------------------------------------------


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # the mapping engine's date functions read local times in this zone; see hub.core.tenants
    timezone: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TIMEZONE, server_default=DEFAULT_TIMEZONE
    )
    locale: Mapped[str] = mapped_column(
        String(16), default=DEFAULT_LOCALE, server_default=DEFAULT_LOCALE
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class TenantErasure(Base):
    """An offboarding: started, resumed batch by batch, then its receipt (counts only).

    `tenant_id` is no foreign key: the tenant row is the last thing an erasure deletes.
    """

    __tablename__ = "tenant_erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(Integer, index=True)
    slug: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, int]] = mapped_column(JSON)  # table -> rows deleted so far
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[KeyKind] = mapped_column(status_type(KeyKind), default=KeyKind.INGEST)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    sources: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class RateLimit(Base):
    """A tenant's override of a source's rate limit (source NULL: every source)."""

    __tablename__ = "rate_limits"
    __table_args__ = (UniqueConstraint("tenant_id", "source", name="uq_rate_limits_tenant_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    source: Mapped[str | None] = mapped_column(String(64))
    limit: Mapped[str] = mapped_column(String(64))  # "600/minute", as `limits` parses it
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


# -- events ---------------------------------------------------------------------------------------


class IntegrationEvent(Base):
    __tablename__ = "integration_events"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "source", "external_id", name="uq_events_tenant_source_external"
        ),
        Index("ix_events_status_created", "status", "created_at"),
        Index("ix_events_status_lease", "status", "lease_expires_at"),  # the sweeper's expiry
        Index("ix_events_external_id", "external_id"),  # console search, any tenant or source
        Index("ix_events_correlation_id", "correlation_id"),
        Index("ix_events_tenant_id_id", "tenant_id", "id"),  # a tenant's events, newest first
    )

    id: Mapped[str] = mapped_column(PublicId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(ExternalId)
    event_type: Mapped[str] = mapped_column(String(255))
    queue: Mapped[str] = mapped_column(String(32), default="default")  # process_events goes here
    status: Mapped[EventStatus] = mapped_column(
        status_type(EventStatus), default=EventStatus.RECEIVED
    )
    payload: Mapped[bytes | None] = mapped_column(Blob)  # raw body, encrypted at rest; None: purged
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON)  # clear: before 0006 only
    sealed_headers: Mapped[bytes | None] = mapped_column(Blob)  # JSON, encrypted; None: purged
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # `processing` until then: a mapping job that died lets the sweeper hand its events on
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    erased_at: Mapped[datetime | None] = mapped_column(Timestamp)  # personal data removed


# -- configuration applied from mappings/ --------------------------------------------------------


class EventMapping(Base):
    """One rule file as applied: its definition, version and checksum."""

    __tablename__ = "event_mappings"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_event_mappings_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class WebhookEndpoint(Base):
    """A delivery target from endpoints.yaml; secrets stay `env:` references."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_webhook_endpoints_name_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[EndpointKind] = mapped_column(status_type(EndpointKind))
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class EventSource(Base):
    """A source from sources.yaml (who may send, how its events are recognised); secrets stay
    `env:` / `secret:` references, resolved by each web process."""

    __tablename__ = "event_sources"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_event_sources_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ConfigVersion(Base):
    """One effective `hub mappings apply`: its id is the config version workers and web
    processes watch."""

    __tablename__ = "config_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checksum: Mapped[str] = mapped_column(String(64))  # of every applied rule, endpoint, source
    rules: Mapped[int] = mapped_column(Integer)
    endpoints: Mapped[int] = mapped_column(Integer)
    sources: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


# -- deliveries -----------------------------------------------------------------------------------


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "mapping", "route", name="uq_deliveries_event_mapping_route"),
        Index("ix_deliveries_endpoint_status", "endpoint_id", "status"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_deliveries_created_at", "created_at"),  # /status: last hour and day
        Index("ix_deliveries_endpoint_name_status", "endpoint", "status"),  # pause and resume
    )

    id: Mapped[str] = mapped_column(PublicId, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("integration_events.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    mapping: Mapped[str] = mapped_column(String(128))  # rule name
    route: Mapped[str] = mapped_column(String(128))  # route key within the rule
    endpoint: Mapped[str] = mapped_column(String(128))  # endpoint name
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    queue: Mapped[str] = mapped_column(String(32))
    status: Mapped[DeliveryStatus] = mapped_column(
        status_type(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    request: Mapped[bytes | None] = mapped_column(Blob)  # what to send, encrypted; None: purged
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)  # delayed routes
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)
    erased_at: Mapped[datetime | None] = mapped_column(Timestamp)


class EndpointPause(Base):
    """An endpoint an operator paused: its deliveries wait as `paused` until it is resumed."""

    __tablename__ = "endpoint_pauses"

    endpoint: Mapped[str] = mapped_column(String(128), primary_key=True)  # endpoint name
    paused_by: Mapped[str | None] = mapped_column(String(255))  # the key's name
    paused_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_started_at", "started_at"),)  # /status

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(512))
    error_class: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | dead | deferred


class RetryQueue(Base):
    """When a delivery is tried next; the sweeper enqueues due rows on the `retry` queue."""

    __tablename__ = "retry_queue"
    __table_args__ = (
        UniqueConstraint("delivery_id", name="uq_retry_queue_delivery"),
        Index("ix_retry_queue_next_retry_at", "next_retry_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"))
    next_retry_at: Mapped[datetime] = mapped_column(Timestamp)
    attempt: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class DeadLetter(Base):
    __tablename__ = "dead_letter"
    __table_args__ = (
        Index("ix_dead_letter_status_created", "status", "created_at"),
        Index("uq_dead_letter_open_key", "open_key", unique=True),
    )

    id: Mapped[str] = mapped_column(PublicId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("integration_events.id"), index=True)
    delivery_id: Mapped[str | None] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str | None] = mapped_column(String(128))
    stage: Mapped[DeadLetterStage] = mapped_column(status_type(DeadLetterStage))
    status: Mapped[DeadLetterStatus] = mapped_column(
        status_type(DeadLetterStatus), default=DeadLetterStatus.OPEN
    )
    reason: Mapped[str] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp)
    erased_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # "stage:delivery id" (or "stage:event id" without a delivery) while open, NULL once
    # resolved: at most one open dead letter per (delivery or event, stage); see dead_letters
    open_key: Mapped[str | None] = mapped_column(String(48))


class SyncJob(Base):
    """A sync of mappings/syncs.yaml for one tenant: its schedule, lease and high-water mark.

    `hub mappings apply` writes the definition; the sweeper claims due rows (idle or failed with
    `next_run_at` past, or queued/running with `lease_expires_at` past) and enqueues the run on
    `low`. `endpoint` holds the sync's source (the events are stored as that source's).
    """

    __tablename__ = "sync_jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_sync_jobs_tenant_name"),
        Index("ix_sync_jobs_next_run_at", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(128))
    interval_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[SyncJobStatus] = mapped_column(
        status_type(SyncJobStatus), default=SyncJobStatus.IDLE
    )
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    next_run_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # revision 0004
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False: gone from syncs.yaml
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the SyncConfig, applied
    checksum: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(32))  # the sync_runs row holding the lease
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    high_water_mark: Mapped[datetime | None] = mapped_column(Timestamp)  # of complete runs only
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed runs
    last_success_at: Mapped[datetime | None] = mapped_column(Timestamp)


class SyncRun(Base):
    """One run of a sync job: what it pulled and what it found."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_job_started", "job_id", "started_at"),)

    id: Mapped[str] = mapped_column(PublicId, primary_key=True)  # syr_...
    job_id: Mapped[int] = mapped_column(ForeignKey("sync_jobs.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    status: Mapped[SyncRunStatus] = mapped_column(
        status_type(SyncRunStatus), default=SyncRunStatus.RUNNING
    )
    since: Mapped[datetime | None] = mapped_column(Timestamp)  # the window's start asked for
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)  # events created: missed webhooks
    duplicates: Mapped[int] = mapped_column(Integer, default=0)  # already received
    errors: Mapped[int] = mapped_column(Integer, default=0)  # items without an id or type
    retries: Mapped[int] = mapped_column(Integer, default=0)  # requests the source failed
    high_water_mark: Mapped[datetime | None] = mapped_column(Timestamp)  # when complete
    error: Mapped[str | None] = mapped_column(Text)


# -- links to records in other systems ------------------------------------------------------------


class CalendarLink(Base):
    """An appointment key -> the calendar event hub made for it (google_calendar endpoints), so a
    retry or a replay patches that event instead of creating a second one."""

    __tablename__ = "calendar_links"
    __table_args__ = (
        UniqueConstraint("tenant", "endpoint", "appointment_key", name="uq_calendar_links_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))  # the tenant's slug ("" without one)
    endpoint: Mapped[str] = mapped_column(String(128))
    appointment_key: Mapped[str] = mapped_column(String(255))
    calendar_id: Mapped[str] = mapped_column(String(255))
    calendar_event_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


# -- security and personal data (LGPD) ------------------------------------------------------------


class TenantSecret(Base):
    """A tenant's credential for `secret:NAME` references; the value is encrypted at rest."""

    __tablename__ = "tenant_secrets"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_tenant_secrets_tenant_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)  # +1 on every set
    value: Mapped[bytes] = mapped_column(Blob)
    updated_by: Mapped[str] = mapped_column(String(64))  # actor, as in audit_log
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class PersonIndex(Base):
    """Keyed hashes (HMAC) of the personal identifiers a source declares, per event."""

    __tablename__ = "person_index"
    __table_args__ = (Index("ix_person_index_digest", "digest", "tenant_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("integration_events.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # cpf | phone | email
    digest: Mapped[str] = mapped_column(String(64))  # hex HMAC-SHA256, hub.core.crypto


class Erasure(Base):
    """The receipt of an erasure by person: what and how much, never who."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))  # None: every tenant
    kinds: Mapped[str] = mapped_column(String(32))  # identifier kinds asked for: "cpf,phone"
    events: Mapped[int] = mapped_column(Integer)
    deliveries: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    dead_letters: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class AuditEntry(Base):
    """One credential or admin operation: who (actor), which tenant, what; never a secret."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # key:12 | cli:alice
    tenant_id: Mapped[int | None] = mapped_column(Integer)  # no FK: the entry outlives a tenant
    action: Mapped[str] = mapped_column(String(64))  # secret.set, key.revoke, erasure, …
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

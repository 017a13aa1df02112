"""One settings class for every hub process.

Built once at the edge (the CLI, `create_app`, a worker's start) from `HUB_*` environment variables
and a `.env` file, then passed down. Tests build `Settings(...)` directly.

Leaving `database_url` / `redis_url` unset selects the embedded default: SQLite in
`<data_dir>/hub.db` (WAL mode) and an embedded Redis started by `hub up`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str | None = Field(
        default=None,
        description=(
            "mysql://user:pw@host/hub (mysqlclient where installed, else PyMySQL) or "
            "sqlite:///path; unset: SQLite in data_dir"
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description="redis:// or unix:// URL; unset: the embedded Redis that `hub up` starts",
    )
    data_dir: Path = Field(default=Path(".hub"), description="embedded database, Redis and keys")
    mappings_dir: Path = Field(default=Path("mappings"), description="sources, endpoints, rules")
    body_limit: int = Field(default=MIB, gt=0, description="largest accepted webhook body, bytes")
    default_rate_limit: str = Field(default="100/minute", description="per tenant and source")
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    secret_key: SecretStr | None = Field(
        default=None,
        description="the single key of earlier versions; now the oldest of the keys",
    )
    secret_keys: SecretStr | None = Field(
        default=None,
        description="encryption keys at rest, comma-separated, newest first (see hub.core.crypto)",
    )
    secret_key_file: Path | None = Field(
        default=None, description="a file of encryption keys, one a line, newest first"
    )
    person_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of the personal-identifier index; unset: data_dir/person.key",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed"
    )
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs or host names deliveries may reach beyond public addresses "
        "(comma-separated or a JSON list); loopback, link-local and private are closed otherwise",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    job_timeout: int = Field(default=300, gt=0, description="RQ job timeout, seconds")
    alert_backlog_age: float = Field(
        default=300.0, gt=0, description="alert when a queue's oldest job is older, seconds"
    )
    alert_failure_rate: float = Field(
        default=0.5, ge=0, le=1, description="alert when an endpoint fails more often (last hour)"
    )
    alert_failure_min_attempts: int = Field(
        default=20, ge=1, description="attempts in the last hour before a failure rate counts"
    )
    alert_dead_letter_growth: int = Field(
        default=10, ge=1, description="alert when this many dead letters open within an hour"
    )
    alert_endpoint: str | None = Field(
        default=None, description="endpoint (kind webhook) the sweeper posts new alerts to"
    )
    alert_interval: float = Field(
        default=60.0, ge=0, description="seconds between the sweeper's alert checks"
    )
    limit_concurrency: int = Field(
        default=1000,
        ge=1,
        description="connections and requests a web process holds at once; past it, 503",
    )
    keepalive_timeout: int = Field(
        default=5, ge=1, description="seconds an idle keep-alive connection is kept open"
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, GET /metrics needs `Authorization: Bearer <token>` (off: open)",
    )
    sync_lease: float = Field(
        default=300.0,
        gt=0,
        description="seconds a sync run (or its queued job) holds its job before another may",
    )
    sync_job_timeout: int = Field(
        default=3600, gt=0, description="RQ timeout of one sync run, seconds"
    )

    console_session_ttl: float = Field(
        default=8 * 3600.0, gt=0, description="seconds a console sign-in lasts"
    )
    console_show_payloads: bool = Field(
        default=True, description="the console's event page shows the decrypted payload"
    )

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("database_url", "redis_url", "metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "hub.db"

    @property
    def effective_database_url(self) -> str:
        """The URL actually used: the configured one, or the embedded SQLite file."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{self.sqlite_path.resolve()}"

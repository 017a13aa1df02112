"""Syncs: scheduled pulls of what changed in a source system (mappings/syncs.yaml).

```yaml
syncs:
  crm-clients:
    source: crm                               # events are stored as this source's: a webhook
    tenants: all                              #   already received is a duplicate
    schedule: 15m                             # an interval, or a cron expression "*/15 * * * *"
    request:
      url: "env:{TENANT}_CRM_API_URL"         # literal or env: reference, per tenant
      path: /clients                          # appended to url
      headers: {Authorization: "env:{TENANT}_CRM_API_TOKEN"}   # references only
      params: {per_page: 100}
      timeout: 10s
    pagination: {kind: page, param: page, start: 1}   # or {kind: cursor, param: cursor,
                                                      #  cursor: $.next} or {kind: link}
    window: {param: updated_since, field: $.updated_at, overlap: 10m, initial: 7d}
    items: $.data
    event_id: {jsonpath: $.event_id}          # as in sources.yaml: jsonpath or const
    event_type: {const: client.registered}
    retry: {max_attempts: 5, base: 2s, max_delay: 5m}
```
The window asks for items updated since the last complete run's high-water mark minus `overlap`
(`initial` back from now on the first run; without `initial` the first run pulls everything).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BeforeValidator, Field, field_validator, model_validator

from hub.core import envrefs
from hub.core.errors import MappingsError
from hub.core.tenants import validate_slug
from hub.core.units import parse_duration
from hub.core.yamlfile import ConfigModel, load_named_section, load_yaml, problem
from hub.delivery.endpoints import RetryConfig
from hub.delivery.retry import RetryPolicy, policy_for
from hub.ingress.sources import Extractor, SourceConfig

SYNCS_FILE = "syncs.yaml"
MAX_PAGES = 100_000

Duration = Annotated[float, BeforeValidator(parse_duration)]
# seed 001's backoff, shorter: a run waits in its worker, so it gives up within minutes
DEFAULT_RETRY = RetryConfig(max_attempts=5, base=2.0, max_delay=300.0)


class PageKind(enum.StrEnum):
    NONE = "none"  # one request
    PAGE = "page"  # ?page=1, 2, … until a page has no items
    CURSOR = "cursor"  # ?cursor=<the JSONPath's value in the previous page> until it is empty
    LINK = "link"  # the `Link: <…>; rel="next"` header until there is none


def _jsonpath(value: str) -> str:
    Extractor(jsonpath=value)  # the same checks as sources.yaml's
    return value


JsonPath = Annotated[str, BeforeValidator(lambda v: _jsonpath(v) if isinstance(v, str) else v)]


class RequestConfig(ConfigModel):
    url: str
    path: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if envrefs.is_ref(value):
            if not envrefs.valid_ref(value):
                raise ValueError(f"not a valid reference: {value!r}")
        elif not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("an http(s) URL or a reference like 'env:{TENANT}_CRM_API_URL'")
        return value

    @field_validator("headers")
    @classmethod
    def _refs_only(cls, headers: dict[str, str]) -> dict[str, str]:
        for value in headers.values():
            if not (envrefs.is_ref(value) and envrefs.valid_ref(value)):
                raise ValueError(
                    "header values may be credentials: write references like "
                    "'env:{TENANT}_CRM_API_TOKEN'"
                )
        return headers


class PaginationConfig(ConfigModel):
    kind: PageKind = PageKind.NONE
    param: str | None = None  # page and cursor: the query parameter
    start: int = 1  # page: the first page's number
    cursor: JsonPath | None = None  # cursor: where the next cursor is in a page
    max_pages: int = Field(default=MAX_PAGES, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> PaginationConfig:
        if self.kind in (PageKind.PAGE, PageKind.CURSOR) and not self.param:
            raise ValueError(f"pagination of kind {self.kind.value} needs 'param'")
        if self.kind == PageKind.CURSOR and not self.cursor:
            raise ValueError("pagination of kind cursor needs 'cursor' (a JSONPath)")
        if self.kind != PageKind.CURSOR and self.cursor:
            raise ValueError("'cursor' is for pagination of kind cursor")
        return self


class WindowConfig(ConfigModel):
    param: str  # the query parameter: items updated since
    field: JsonPath  # each item's update time: ISO 8601 or epoch seconds/milliseconds
    overlap: Duration = 300.0
    initial: Duration | None = None  # first run: this far back; None: everything
    format: Literal["iso", "unix"] = "iso"  # how `param` is written


class SyncConfig(ConfigModel):
    source: str
    tenants: Literal["all"] | list[str] = "all"
    schedule: str
    request: RequestConfig
    pagination: PaginationConfig = PaginationConfig()
    window: WindowConfig | None = None
    items: JsonPath = "$"
    event_id: Extractor
    event_type: Extractor
    retry: RetryConfig = DEFAULT_RETRY

    @field_validator("tenants")
    @classmethod
    def _slugs(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("name at least one tenant, or write 'all'")
            for slug in value:
                validate_slug(slug)
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{value}s"
        if isinstance(value, str):
            interval_of(value)  # raises ValueError naming the problem
        return value

    @field_validator("event_id", "event_type")
    @classmethod
    def _no_header(cls, value: Extractor) -> Extractor:
        if value.header is not None:
            raise ValueError("items pulled by a sync have no headers: use jsonpath or const")
        return value

    @property
    def interval_seconds(self) -> int:
        return max(int(interval_of(self.schedule)), 1)

    def next_run(self, after: datetime) -> datetime:
        return next_run(self.schedule, after)

    def retry_policy(self) -> RetryPolicy:
        from hub.core.models import EndpointKind

        return policy_for(EndpointKind.ZAPI, self.retry)  # exponential defaults, our fields

    def definition(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- schedules ------------------------------------------------------------------------------------


def _is_cron(schedule: str) -> bool:
    return len(schedule.split()) >= 5


def interval_of(schedule: str) -> float:
    """Seconds between runs: the interval, or the gap between a cron expression's next two."""
    if _is_cron(schedule):
        if not croniter.is_valid(schedule):
            raise ValueError(f"not a cron expression: {schedule!r}")
        it = croniter(schedule, datetime(2026, 1, 1))
        first = it.get_next(datetime)
        return float((it.get_next(datetime) - first).total_seconds())
    try:
        seconds = parse_duration(schedule)
    except ValueError:
        raise ValueError(
            f"not a schedule: {schedule!r} (an interval like 15m, or a cron expression "
            "like '*/15 * * * *')"
        ) from None
    if seconds < 1:
        raise ValueError("a schedule's interval is at least 1s")
    return seconds


def next_run(schedule: str, after: datetime) -> datetime:
    """When a sync with `schedule` runs next after `after` (naive UTC)."""
    if _is_cron(schedule):
        found: datetime = croniter(schedule, after).get_next(datetime)
        return found
    return after + timedelta(seconds=interval_of(schedule))


# -- the file -------------------------------------------------------------------------------------


def read_syncs(
    mappings_dir: Path, sources: Mapping[str, SourceConfig] | None = None
) -> tuple[dict[str, SyncConfig], list[str]]:
    """(syncs, problems) of `mappings_dir/syncs.yaml` (absent: none); each sync's source must be
    one of `sources` when they are given."""
    path = mappings_dir / SYNCS_FILE
    if not path.is_file():
        return {}, []
    syncs, problems = load_named_section(path, "syncs", SyncConfig)
    if sources is not None and syncs:
        _, lines = load_yaml(path)
        for name, sync in list(syncs.items()):
            if sync.source not in sources:
                known = ", ".join(sorted(sources)) or "none"
                problems.append(
                    problem(
                        path,
                        lines,
                        ("syncs", name, "source"),
                        f"unknown source '{sync.source}' (known: {known})",
                    )
                )
                del syncs[name]
    return syncs, problems


def load_syncs(
    mappings_dir: Path, sources: Mapping[str, SourceConfig] | None = None
) -> dict[str, SyncConfig]:
    """Every sync of `mappings_dir/syncs.yaml`; MappingsError lists every problem."""
    syncs, problems = read_syncs(mappings_dir, sources)
    if problems:
        raise MappingsError(problems)
    return syncs

"""What the admin API accepts, as pydantic models: every query parameter and body field is
typed and bounded here, so a bad value is a 400 with the JSON error body, never a 500.

`parse(Model, data)` validates a mapping (query parameters or a JSON object) and raises
BadRequest naming the first bad field; unknown fields are refused, so a mistyped filter is an
error rather than a silently wider answer.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from hub.core.errors import BadRequest
from hub.core.models import DeadLetterStage, DeadLetterStatus, EventStatus

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_OFFSET = 10_000_000

Name = Annotated[str, Field(min_length=1, max_length=255)]
Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Time = Annotated[str, Field(min_length=1, max_length=64)]  # ISO time or an age ("2h"): replay
PublicId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
Limit = Annotated[int, Field(ge=1, le=MAX_PAGE)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventsQuery(Params):
    """GET /admin/events"""

    status: EventStatus | None = None
    source: Name | None = None
    event_type: Name | None = None
    external_id: Name | None = None
    correlation_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    tenant: Slug | None = None
    since: Time | None = None
    until: Time | None = None
    before: PublicId | None = None  # keyset paging: the `next_before` of the previous page
    limit: Limit = DEFAULT_PAGE


class DeadLetterFilters(Params):
    source: Name | None = None
    endpoint: Name | None = None
    tenant: Slug | None = None
    since: Time | None = None
    until: Time | None = None


class DeadLettersQuery(DeadLetterFilters):
    """GET /admin/dead-letters"""

    status: DeadLetterStatus | Literal["all"] = DeadLetterStatus.OPEN
    stage: DeadLetterStage | None = None
    limit: Limit = DEFAULT_PAGE
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0


class ReplayBody(Params):
    """POST /admin/events/{id}/replay and /admin/dead-letters/{id}/replay"""

    remap: StrictBool = False
    dry_run: StrictBool = False


class BulkReplayBody(DeadLetterFilters):
    """POST /admin/dead-letters/replay"""

    limit: Limit | None = None
    remap: StrictBool = False
    dry_run: StrictBool = False


class AuditQuery(Params):
    """GET /admin/audit"""

    tenant: Slug | None = None
    action: Name | None = None
    since: Time | None = None
    limit: Limit = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0


class ErasureRequest(Params):
    """POST /admin/erasures: the person, by one or more identifiers"""

    cpf: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    phone: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    email: Annotated[str, Field(min_length=3, max_length=254)] | None = None
    tenant: Slug | None = None
    dry_run: StrictBool = False


class TenantCreate(Params):
    """POST /admin/tenants"""

    slug: Annotated[str, Field(min_length=1, max_length=64)]
    name: Name | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    locale: Annotated[str, Field(min_length=2, max_length=16)] | None = None


class TenantUpdate(Params):
    """PATCH /admin/tenants/{slug}"""

    name: Name | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    locale: Annotated[str, Field(min_length=2, max_length=16)] | None = None
    active: StrictBool | None = None


class LimitSet(Params):
    """PUT /admin/tenants/{slug}/limits; no source (or "*"): every source"""

    limit: Annotated[str, Field(min_length=1, max_length=64)]
    source: Name | None = None


class LimitUnset(Params):
    """DELETE /admin/tenants/{slug}/limits"""

    source: Name | None = None


M = TypeVar("M", bound=Params)
_NUMBER_ERRORS = {"greater_than_equal", "less_than_equal"}  # and every int_* type


def parse(model: type[M], data: Any) -> M:
    """`data` as `model`, or BadRequest naming the first field that is wrong and why."""
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return model.model_validate({k: v for k, v in data.items() if v != ""})
    except ValidationError as exc:
        raise BadRequest(_message(model, exc.errors()[0])) from exc


def _message(model: type[Params], error: Any) -> str:
    where = str(error["loc"][0]) if error["loc"] else "body"
    field = model.model_fields.get(where)
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"unknown parameter {where!r}; allowed: {', '.join(sorted(model.model_fields))}"
    if kind in ("enum", "literal_error") and field is not None:
        return f"{where} must be one of {', '.join(_choices(field.annotation))}"
    if kind.startswith("int_") or kind in _NUMBER_ERRORS:
        low, high = _bounds(field)
        return f"{where} must be a whole number from {low} to {high}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{where} must be true or false"
    if kind == "string_pattern_mismatch":
        return f"{where} has characters that are not allowed"
    if kind == "string_too_long":
        return f"{where} is at most {ctx.get('max_length')} characters"
    return f"{where}: {error['msg']}"


def _choices(annotation: Any) -> list[str]:
    """The values an enum (or a union of enums and literals) field accepts."""
    out: list[str] = []
    for arg in getattr(annotation, "__args__", (annotation,)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            out += [str(member.value) for member in arg]
        elif isinstance(arg, str):
            out.append(arg)
        elif getattr(arg, "__args__", None):
            out += _choices(arg)
    return out


def _bounds(field: Any) -> tuple[object, object]:
    low: object = 0
    high: object = "any"
    for meta in getattr(field, "metadata", []):
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    return low, high

"""The safe functions a rule may call: `{fn: phone_br, args: [$.phone]}`.

Each function takes already-evaluated JSON values and returns a JSON value; `None` in gives `None`
out (a missing path stays null). A value that does not fit raises `TransformError` with a reason
that names no personal data, so it can be stored as the event's failure reason. There is no eval,
no exec and no attribute access: a rule can only reach the functions registered here.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from hub.core.errors import TransformError
from hub.core.tenants import DEFAULT_SETTINGS, Locale, TenantSettings

DEFAULT_TZ = DEFAULT_SETTINGS.timezone
_NON_DIGITS = re.compile(r"\D+")
_CNPJ_CHARS = re.compile(r"[^0-9A-Z]+")
_DAY_FIRST = ("%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d-%m-%Y")
_MONTH_FIRST = ("%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m-%d-%Y")


@dataclass(frozen=True)
class _Current:
    zone: ZoneInfo
    locale: Locale


def _current_of(settings: TenantSettings) -> _Current:
    return _Current(settings.zone, settings.conventions)


_DEFAULT_CURRENT = _current_of(DEFAULT_SETTINGS)
_TENANT: ContextVar[_Current] = ContextVar("hub_mapping_tenant", default=_DEFAULT_CURRENT)


@contextmanager
def tenant_settings(settings: TenantSettings | None) -> Iterator[None]:
    """Date and money functions called inside use this tenant's time zone and locale."""
    if settings is None or settings == DEFAULT_SETTINGS:
        yield
        return
    token = _TENANT.set(_current_of(settings))
    try:
        yield
    finally:
        _TENANT.reset(token)


@dataclass(frozen=True)
class Function:
    """A registered function: its arity and which constant arguments it accepts."""

    name: str
    call: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    summary: str
    choices: dict[int, tuple[str, ...]] = field(default_factory=dict)  # arg index -> constants
    zone_arg: int | None = None  # the index of a time-zone argument

    def check_constant(self, index: int, value: object) -> str | None:
        """Why a constant argument is unusable (checked at load time), or None."""
        allowed = self.choices.get(index)
        if allowed is not None and value not in allowed:
            return f"{self.name}: argument {index + 1} is one of {', '.join(allowed)}"
        if index == self.zone_arg:
            try:
                ZoneInfo(str(value))
            except (ZoneInfoNotFoundError, ValueError):
                return f"{self.name}: unknown time zone {value!r}"
        return None


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, dict | list):
        raise TransformError(f"{name} expects text, got {_kind(value)}")
    return str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- text -----------------------------------------------------------------------------------------


def lower(value: Any) -> str | None:
    return None if value is None else _text("lower", value).lower()


def upper(value: Any) -> str | None:
    return None if value is None else _text("upper", value).upper()


def trim(value: Any) -> str | None:
    return None if value is None else _text("trim", value).strip()


def digits(value: Any) -> str | None:
    return None if value is None else _NON_DIGITS.sub("", _text("digits", value))


def concat(*values: Any) -> str:
    return "".join(_text("concat", v) for v in values if v is not None)


def coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def sha256(value: Any, salt: Any = None) -> str | None:
    """Hex SHA-256 of the value (objects as sorted JSON), optionally salted: a pseudonym."""
    if value is None:
        return None
    if isinstance(value, str):
        data = value.encode()
    else:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    prefix = _text("sha256", salt).encode() if salt is not None else b""
    return hashlib.sha256(prefix + data).hexdigest()


# -- Brazilian documents and phones ---------------------------------------------------------------


def phone_br(value: Any) -> str | None:
    """A Brazilian phone in E.164 (`+5511912345678`) from any common way of writing it."""
    if value is None:
        return None
    number = _NON_DIGITS.sub("", _text("phone_br", value))
    if number.startswith("00"):
        number = number[2:]
    if len(number) in (12, 13) and number.startswith("55"):
        number = number[2:]
    elif len(number) in (11, 12) and number.startswith("0"):
        number = number[1:]  # trunk prefix: 0 + area code
    if len(number) not in (10, 11) or number[0] == "0" or number[1] == "0":
        raise TransformError(f"phone_br: not a Brazilian phone number ({len(number)} digits)")
    if len(number) == 11 and number[2] != "9":
        raise TransformError("phone_br: an 11-digit number is a mobile and starts with 9")
    return "+55" + number


def _check_digit(values: list[int], weights: range | list[int]) -> int:
    total = sum(v * w for v, w in zip(values, weights, strict=False))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def _cpf_valid(number: str) -> bool:
    if len(number) != 11 or number == number[0] * 11:
        return False
    values = [int(c) for c in number]
    first = _check_digit(values[:9], range(10, 1, -1))
    second = _check_digit(values[:10], range(11, 1, -1))
    return values[9] == first and values[10] == second


def cpf(value: Any, mode: str = "format") -> Any:
    """CPF: `format` 123.456.789-09, `digits`, `mask` ***.456.789-**, `validate` true/false."""
    if value is None:
        return None
    number = _NON_DIGITS.sub("", _text("cpf", value))
    if isinstance(value, int) and not isinstance(value, bool):
        number = number.zfill(11)
    valid = _cpf_valid(number)
    if mode == "validate":
        return valid
    if not valid:
        raise TransformError("cpf: not a valid CPF")
    if mode == "digits":
        return number
    if mode == "mask":
        return f"***.{number[3:6]}.{number[6:9]}-**"
    return f"{number[:3]}.{number[3:6]}.{number[6:9]}-{number[9:]}"


_CNPJ_W1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
_CNPJ_W2 = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]


def _cnpj_valid(number: str) -> bool:
    """Numeric and (since July 2026) alphanumeric CNPJ: each character counts as ord(c) - 48."""
    if len(number) != 14 or not number[12:].isdigit() or number == number[0] * 14:
        return False
    values = [ord(c) - 48 for c in number]
    first = _check_digit(values[:12], _CNPJ_W1)
    second = _check_digit(values[:13], _CNPJ_W2)
    return values[12] == first and values[13] == second


def cnpj(value: Any, mode: str = "format") -> Any:
    """CNPJ: `format` 12.345.678/0001-95, `digits`, `mask` **.345.678/0001-**, `validate`."""
    if value is None:
        return None
    number = _CNPJ_CHARS.sub("", _text("cnpj", value).upper())
    valid = _cnpj_valid(number)
    if mode == "validate":
        return valid
    if not valid:
        raise TransformError("cnpj: not a valid CNPJ")
    if mode == "digits":
        return number
    if mode == "mask":
        return f"**.{number[2:5]}.{number[5:8]}/{number[8:12]}-**"
    return f"{number[:2]}.{number[2:5]}.{number[5:8]}/{number[8:12]}-{number[12:]}"


# -- dates and money ------------------------------------------------------------------------------


def _parse_moment(name: str, value: Any, input_format: str | None) -> datetime | date:
    """A datetime (aware) or a date from text, an epoch number or an explicit strptime format."""
    if isinstance(value, bool):
        raise TransformError(f"{name}: expects a date, got a boolean")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise TransformError(f"{name}: epoch value out of range") from exc
    text = _text(name, value).strip()
    if input_format is not None:
        try:
            parsed = datetime.strptime(text, input_format)
        except ValueError as exc:
            raise TransformError(f"{name}: does not match the format {input_format!r}") from exc
        return parsed.replace(tzinfo=_TENANT.get().zone)
    if len(text) == 10 and text[4] == "-":
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    current = _TENANT.get()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _DAY_FIRST if current.locale.day_first else _MONTH_FIRST:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise TransformError(f"{name}: not a date or time it can read") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=current.zone)  # systems send the tenant's local time
    return parsed


def date_fn(value: Any, fmt: str = "%Y-%m-%d", input_format: str | None = None) -> str | None:
    """A date as `fmt` (strftime, or `iso`); instants are taken in the tenant's time zone."""
    if value is None:
        return None
    moment = _parse_moment("date", value, input_format)
    day = moment.astimezone(_TENANT.get().zone).date() if isinstance(moment, datetime) else moment
    return day.isoformat() if fmt == "iso" else day.strftime(fmt)


def datetime_fn(
    value: Any, fmt: str = "iso", tz: str | None = None, input_format: str | None = None
) -> str | None:
    """An instant converted to `tz` (default: the tenant's time zone, America/Sao_Paulo unless
    it set another) as ISO 8601 or strftime `fmt`."""
    if value is None:
        return None
    home = _TENANT.get().zone
    moment = _parse_moment("datetime", value, input_format)
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(), tzinfo=home)
    try:
        zone = home if tz is None else ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TransformError(f"datetime: unknown time zone {tz!r}") from exc
    local = moment.astimezone(zone)
    return local.isoformat() if fmt == "iso" else local.strftime(fmt)


_CENT = Decimal("0.01")


def money(value: Any) -> int | None:
    """An amount in currency units (12.5, "1.234,56", "R$ 10") as integer cents."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TransformError("money: expects an amount, got a boolean")
    if isinstance(value, int):
        return value * 100
    if isinstance(value, float):
        amount = Decimal(repr(value))
    else:
        text = _text("money", value).replace("R$", "").replace("\xa0", "").replace(" ", "")
        negative = text.startswith("-")
        text = text.lstrip("+-")
        if "," in text and "." in text:
            decimal_sep = "," if text.rfind(",") > text.rfind(".") else "."
        elif "," in text:
            decimal_sep = "," if len(text) - text.rfind(",") - 1 in (1, 2) else ""
        elif text.count(".") > 1:
            decimal_sep = ""  # 1.234.567: thousands separators
        else:
            decimal_sep = "."
        thousands = {",", "."} - {decimal_sep}
        for sep in thousands:
            text = text.replace(sep, "")
        if decimal_sep == ",":
            text = text.replace(",", ".")
        if not re.fullmatch(r"\d+(\.\d+)?", text):
            raise TransformError("money: not an amount it can read")
        try:
            amount = Decimal(text)
        except InvalidOperation as exc:
            raise TransformError("money: not an amount it can read") from exc
        if negative:
            amount = -amount
    return int((amount.quantize(_CENT, rounding=ROUND_HALF_UP) * 100).to_integral_value())


def money_text(cents: Any) -> str | None:
    """Integer cents as the tenant's locale writes money: 123456 -> "R$ 1.234,56" (pt-BR)."""
    if cents is None:
        return None
    if isinstance(cents, bool) or not isinstance(cents, int | float):
        raise TransformError(f"money_text: expects integer cents, got {_kind(cents)}")
    if isinstance(cents, float) and not cents.is_integer():
        raise TransformError("money_text: expects integer cents (see money)")
    locale = _TENANT.get().locale
    units, rest = divmod(abs(int(cents)), 100)
    whole = f"{units:,}".replace(",", locale.thousands)
    sign = "-" if cents < 0 else ""
    return sign + locale.money.format(f"{whole}{locale.decimal}{rest:02d}")


_MODES = ("format", "digits", "mask", "validate")

REGISTRY: dict[str, Function] = {
    f.name: f
    for f in (
        Function("lower", lower, 1, 1, "text in lower case"),
        Function("upper", upper, 1, 1, "text in upper case"),
        Function("trim", trim, 1, 1, "text without surrounding spaces"),
        Function("digits", digits, 1, 1, "only the digits of the text"),
        Function("phone_br", phone_br, 1, 1, "a Brazilian phone in E.164: +5511912345678"),
        Function("cpf", cpf, 1, 2, "CPF: format | digits | mask | validate", {1: _MODES}),
        Function("cnpj", cnpj, 1, 2, "CNPJ: format | digits | mask | validate", {1: _MODES}),
        Function("date", date_fn, 1, 3, "date(value, format='%Y-%m-%d', input_format)"),
        Function(
            "datetime",
            datetime_fn,
            1,
            4,
            "datetime(value, format='iso', tz, input_format)",
            zone_arg=2,
        ),
        Function("money", money, 1, 1, "an amount as integer cents"),
        Function("money_text", money_text, 1, 1, "integer cents in the tenant's locale: R$ 1,50"),
        Function("concat", concat, 1, None, "the values joined as text (nulls skipped)"),
        Function("coalesce", coalesce, 1, None, "the first value that is not null or empty"),
        Function("sha256", sha256, 1, 2, "sha256(value, salt): a pseudonym (hex)"),
    )
}


def lookup(name: str) -> Function:
    """The registered function, or TransformError naming the closest valid name."""
    function = REGISTRY.get(name)
    if function is None:
        raise TransformError(unknown_message(name))
    return function


def unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, REGISTRY, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(REGISTRY)})"
    return f"unknown function '{name}'{hint}"

"""The safe function registry: Brazilian formats, dates in São Paulo, money in cents."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.errors import TransformError
from hub.core.tenants import TenantSettings
from hub.mapping import functions as f


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(11) 91234-5678", "+5511912345678"),
        ("+55 11 91234-5678", "+5511912345678"),
        ("5511912345678", "+5511912345678"),
        ("011 91234-5678", "+5511912345678"),
        ("0055 (21) 3222-1100", "+552132221100"),
        ("31 3222-1100", "+553132221100"),
        (11912345678, "+5511912345678"),
    ],
)
def test_phone_br_writes_e164(raw: Any, e164: str) -> None:
    assert f.phone_br(raw) == e164


@pytest.mark.parametrize("raw", ["123", "(11) 81234-5678", "00 1234-5678", "+1 415 555 0100 99"])
def test_phone_br_rejects_what_is_not_a_brazilian_number(raw: str) -> None:
    with pytest.raises(TransformError, match="phone_br"):
        f.phone_br(raw)


def test_a_rejected_phone_is_not_echoed_in_the_reason() -> None:
    with pytest.raises(TransformError) as caught:
        f.phone_br("(11) 1234")
    assert "1234" not in caught.value.message


def test_cpf_validates_formats_and_masks() -> None:
    assert f.cpf("52998224725") == "529.982.247-25"
    assert f.cpf("529.982.247-25", "digits") == "52998224725"
    assert f.cpf("529.982.247-25", "mask") == "***.982.247-**"
    assert f.cpf("529.982.247-25", "validate") is True
    assert f.cpf("529.982.247-24", "validate") is False
    assert f.cpf("111.111.111-11", "validate") is False
    with pytest.raises(TransformError, match="not a valid CPF"):
        f.cpf("529.982.247-24")


def test_cnpj_numeric_and_alphanumeric() -> None:
    assert f.cnpj("11222333000181") == "11.222.333/0001-81"
    assert f.cnpj("11.222.333/0001-81", "mask") == "**.222.333/0001-**"
    assert f.cnpj("11.222.333/0001-82", "validate") is False
    # the alphanumeric CNPJ of Receita Federal's specification example
    assert f.cnpj("12.ABC.345/01DE-35", "validate") is True
    assert f.cnpj("12abc34501de35") == "12.ABC.345/01DE-35"
    with pytest.raises(TransformError, match="not a valid CNPJ"):
        f.cnpj("12.ABC.345/01DE-36")


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        (12.5, 1250),
        (150, 15000),
        ("1.250,90", 125090),
        ("R$ 1.250,90", 125090),
        ("1,250.90", 125090),
        ("10,5", 1050),
        ("1.234.567", 123456700),
        ("0.015", 2),
        ("-3,20", -320),
        ("99", 9900),
    ],
)
def test_money_in_cents(raw: Any, cents: int) -> None:
    assert f.money(raw) == cents


@pytest.mark.parametrize("raw", ["abc", "1,2,3", True, "R$"])
def test_money_rejects_what_is_not_an_amount(raw: Any) -> None:
    with pytest.raises(TransformError, match="money"):
        f.money(raw)


def test_dates_are_taken_in_sao_paulo() -> None:
    # 01:30 UTC on the 28th is still the 27th in São Paulo (UTC-3)
    assert f.date_fn("2026-11-28T01:30:00Z") == "2026-11-27"
    assert f.date_fn("27/11/2026") == "2026-11-27"
    assert f.date_fn("2026-11-27", "%d/%m/%Y") == "27/11/2026"
    assert f.date_fn("27.11.2026", "iso", "%d.%m.%Y") == "2026-11-27"
    assert f.datetime_fn("2026-11-27T13:05:00Z") == "2026-11-27T10:05:00-03:00"
    assert f.datetime_fn(1795784700) == "2026-11-27T10:05:00-03:00"
    assert f.datetime_fn(1795784700000) == "2026-11-27T10:05:00-03:00"
    assert f.datetime_fn("2026-11-27 10:05", "iso", "UTC") == "2026-11-27T13:05:00+00:00"
    assert f.datetime_fn("2026-11-27T13:05:00Z", "%H:%M") == "10:05"
    with pytest.raises(TransformError, match="not a date"):
        f.date_fn("yesterday")


def test_a_tenants_time_zone_and_locale_change_dates_and_money() -> None:
    lisbon = TenantSettings("Europe/Lisbon", "pt-PT")
    us = TenantSettings("America/New_York", "en-US")
    with f.tenant_settings(lisbon):
        assert f.datetime_fn("2026-11-27T13:05:00Z") == "2026-11-27T13:05:00+00:00"
        assert f.datetime_fn("27/11/2026 10:05") == "2026-11-27T10:05:00+00:00"
        assert f.date_fn("2026-11-28T01:30:00Z") == "2026-11-28"
        assert f.money_text(123456) == "1 234,56 €"
    with f.tenant_settings(us):
        assert f.date_fn("03/04/2026") == "2026-03-04"  # month first
        assert f.datetime_fn("2026-11-27 10:05") == "2026-11-27T10:05:00-05:00"
        assert f.money_text(-123456) == "-$1,234.56"
    # outside, and for the default tenant: São Paulo and pt-BR
    assert f.date_fn("03/04/2026") == "2026-04-03"
    assert f.datetime_fn("2026-11-27T13:05:00Z") == "2026-11-27T10:05:00-03:00"
    assert f.money_text(123456) == "R$ 1.234,56" and f.money_text(5) == "R$ 0,05"
    with pytest.raises(TransformError, match="integer cents"):
        f.money_text("12,50")


def test_text_functions_and_null() -> None:
    assert f.lower(" ÁB ") == " áb "
    assert f.upper("ana") == "ANA"
    assert f.trim("  x ") == "x"
    assert f.digits("(11) 9-12") == "11912"
    assert f.concat("a", None, 1, "b") == "a1b"
    assert f.coalesce(None, "", "x", "y") == "x"
    assert f.coalesce(None, None) is None
    for fn in (f.lower, f.upper, f.trim, f.digits, f.phone_br, f.cpf, f.money, f.date_fn):
        assert fn(None) is None
    with pytest.raises(TransformError, match="lower expects text, got an object"):
        f.lower({"a": 1})


def test_sha256_pseudonymises_with_an_optional_salt() -> None:
    plain = f.sha256("+5511912345678")
    assert plain == "195563c1d879cb1564e2cdd6d89363ecb1f091ac0eeac094760f06139eae6077"
    assert f.sha256("+5511912345678", "pepper") != plain
    assert f.sha256({"b": 1, "a": 2}) == f.sha256({"a": 2, "b": 1})


def test_unknown_names_suggest_the_closest() -> None:
    assert f.unknown_message("phone_bz") == "unknown function 'phone_bz' (did you mean 'phone_br'?)"
    assert "known: lower" in f.unknown_message("zzzzzz")

from __future__ import annotations

import limits
import pytest

from hub.core.units import parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10), ("5m", 300), ("5min", 300), ("2h", 7200), ("3d", 259200), (7, 7)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10 parsecs", "-1s", "", "h", -3, True])
def test_bad_durations_say_what_to_write(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"), [("512KiB", 524288), ("1MiB", 1048576), ("2MB", 2000000), ("100", 100)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["0", "12 bananas", "KiB", 0])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "amount", "seconds"),
    [("600/min", 600, 60), ("10/s", 10, 1), ("100/5minutes", 100, 300), ("1000/hour", 1000, 3600)],
)
def test_rates_are_understood_by_limits(text: str, amount: int, seconds: int) -> None:
    item = limits.parse(parse_rate(text))
    assert item.amount == amount
    assert item.get_expiry() == seconds


@pytest.mark.parametrize("bad", ["600", "0/min", "10/ms", "ten/min"])
def test_bad_rates(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)

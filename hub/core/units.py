"""Human units in config files: durations ("10s", "2h"), sizes ("512KiB"), rates ("600/min")."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
_SIZE_UNITS |= {"gb": 1000**3, "gib": 1024**3}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*([a-z]+)\s*$", re.IGNORECASE)
_RATE_UNITS = {
    "s": "second", "sec": "second", "second": "second",
    "m": "minute", "min": "minute", "minute": "minute",
    "h": "hour", "hour": "hour",
    "d": "day", "day": "day",
}  # fmt: skip


def parse_duration(value: str | int | float) -> float:
    """Seconds in "500ms", "10s", "5m"/"5min", "2h", "3d" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 10s, 5m, 2h, 3d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: str | int) -> int:
    """Bytes in "512KiB", "1MiB", "2MB", "100" or an int."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"a size must be positive: {value!r}")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 512KiB, 1MiB)")
    size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size <= 0:
        raise ValueError(f"a size must be positive: {value!r}")
    return size


def parse_rate(value: str) -> str:
    """A rate such as "600/min", "10/s" or "100/5minutes", normalised for `limits`."""
    match = _RATE.match(value)
    unit = None
    if match:
        word = match.group(3).lower()
        plural = len(word) > 3 and word.endswith("s")
        unit = _RATE_UNITS.get(word) or (_RATE_UNITS.get(word[:-1]) if plural else None)
    if not match or not unit or int(match.group(1)) <= 0:
        raise ValueError(f"not a rate: {value!r} (use e.g. 600/min, 10/s, 1000/hour)")
    per = match.group(2)
    return f"{int(match.group(1))}/{per + ' ' if per else ''}{unit}{'s' if per else ''}"

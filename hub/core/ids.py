"""Public ids: a short prefix naming the kind, then a time-ordered ULID-like string.

`evt_01JD3...` sorts by creation time (good for B-tree inserts on MySQL) and is made by the process
that creates the row, so a batch of inserts needs no round trip to learn its ids.
"""

from __future__ import annotations

import time

from hub.core.entropy import unique_bytes

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32

EVENT = "evt"
DELIVERY = "dlv"
DEAD_LETTER = "dlq"


def new_id(prefix: str) -> str:
    """`prefix_` + 10 chars of millisecond time + 16 chars of randomness (26 in all)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(unique_bytes(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def floor_id(prefix: str, when_ms: int) -> str:
    """The smallest id `new_id` could make at millisecond `when_ms`: `id < floor_id(...)` selects
    rows created before that time, on the primary key alone."""
    value = when_ms << 80
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"

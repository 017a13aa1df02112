"""How fast one core builds a route body: `transforms_per_second()` for `hub bench mapping`.

The rule has ten fields of the kinds real rules use (nested paths, an array index, a constant, a
default, a template, functions) and runs on a ~2 KB payload, the way the worker does after
decoding an event: compiled once, then called per event.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hub.mapping.conditions import Problems
from hub.mapping.expressions import compile_value

BODY: dict[str, Any] = {
    "id": "$.id",
    "name": "$.customer.name",
    "email": {"fn": "lower", "args": ["$.customer.email"]},
    "city": "$.customer.address.city",
    "first_sku": "$.items[0].sku",
    "total": "$.totals.amount",
    "currency": {"path": "$.totals.currency", "default": "BRL"},
    "origin": {"const": "site"},
    "greeting": {"template": "Olá {{ $.customer.name }}, pedido {{ $.id }}"},
    "status": "$.status",
}


def sample_payload(size: int = 2048) -> dict[str, Any]:
    """A realistic order-like payload padded to about `size` bytes of JSON."""
    payload: dict[str, Any] = {
        "id": "ord_01JD3XK2Q9",
        "type": "order.created",
        "status": "paid",
        "customer": {
            "name": "Ana Souza",
            "email": "Ana.Souza@Example.com",
            "phone": "(11) 91234-5678",
            "address": {"street": "Rua das Flores, 123", "city": "São Paulo", "state": "SP"},
        },
        "items": [
            {"sku": f"SKU-{n:04d}", "description": "Visita de cuidador 4h", "qty": 1, "price": 160}
            for n in range(8)
        ],
        "totals": {"amount": 1280.0, "currency": "BRL", "discount": 0},
        "notes": "",
    }
    filler = size - len(orjson.dumps(payload))
    if filler > 0:
        payload["notes"] = "x" * filler
    return payload


def transforms_per_second(seconds: float = 3.0) -> dict[str, Any]:
    """Build the ten-field body repeatedly for about `seconds` on this core; report the rate."""
    problems: Problems = []
    build = compile_value(BODY, ("body",), problems)
    if problems:
        raise RuntimeError(f"bench rule does not compile: {problems}")
    payload = sample_payload()
    batch = 2000
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(batch):
            build(payload, payload)
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - started
    return {
        "transforms": count,
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed),
        "fields": len(BODY),
        "payload_bytes": len(orjson.dumps(payload)),
    }

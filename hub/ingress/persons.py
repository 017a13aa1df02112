"""Personal identifiers a source declares, as keyed hashes for erasure by person (LGPD art. 18).

```yaml
sources:
  crm:
    personal:
      cpf: [$.patient.cpf]
      phone: [$.patient.phone, $.contacts[*].phone]
      email: [$.patient.email]
```

At ingest, only the declared paths are read; each value is normalised (CPF: its 11 digits; phone:
E.164, a Brazilian number without country code gets +55; e-mail: trimmed, lower-case) and hashed
with HMAC under HUB_PERSON_KEY (hub.core.crypto.PersonHasher). The digests go to `person_index` in
the event's own group commit (hub.ingress.events). A value that does not look like its kind is
skipped, never refused: the webhook is the sender's, not ours to judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hub.core.crypto import PersonHasher
from hub.core.errors import BadRequest

KINDS = ("cpf", "phone", "email")
_SIMPLE_PATH = re.compile(r"^\$((?:\.[A-Za-z_][A-Za-z0-9_\-]*)+)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")

Finder = Callable[[Any], list[Any]]


def normalise(kind: str, value: object) -> str:
    """The canonical form of an identifier; BadRequest when it is not one."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise BadRequest(f"not a {kind}: a string is expected")
    text = str(value).strip()
    if kind == "cpf":
        digits = re.sub(r"\D", "", text)
        if len(digits) != 11:
            raise BadRequest("a CPF has 11 digits")
        return digits
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        if not text.startswith("+") and len(digits) in (10, 11):  # Brazilian, no country code
            digits = "55" + digits
        if not 8 <= len(digits) <= 15:
            raise BadRequest("a phone has 8 to 15 digits (E.164)")
        return "+" + digits
    if kind == "email":
        lowered = text.lower()
        if not _EMAIL.match(lowered):
            raise BadRequest("not an e-mail address")
        return lowered
    raise BadRequest(f"unknown identifier kind {kind!r}")


def compile_path(path: str) -> Finder:
    """Every value at a JSONPath (a plain `$.a.b` is walked without jsonpath-ng)."""
    simple = _SIMPLE_PATH.match(path)
    if simple:
        steps = simple.group(1).split(".")[1:]

        def walk(body: Any) -> list[Any]:
            for step in steps:
                if not isinstance(body, dict):
                    return []
                body = body.get(step)
            return [] if body is None else [body]

        return walk
    from jsonpath_ng.ext import parse

    compiled = parse(path)
    return lambda body: [m.value for m in compiled.find(body)]


class PersonPaths:
    """A source's declared identifiers, compiled once."""

    def __init__(self, declared: dict[str, list[str]]) -> None:
        self.finders = [(kind, compile_path(p)) for kind, paths in declared.items() for p in paths]

    def __bool__(self) -> bool:
        return bool(self.finders)

    def digests(self, payload: Any, hasher: PersonHasher) -> tuple[tuple[str, str], ...]:
        """(kind, keyed hash) of every declared identifier found, without repeats."""
        found: dict[tuple[str, str], None] = {}
        for kind, find in self.finders:
            for value in find(payload):
                for item in value if isinstance(value, list) else [value]:
                    try:
                        canonical = normalise(kind, item)
                    except BadRequest:
                        continue
                    found[(kind, hasher.digest(kind, canonical))] = None
        return tuple(found)

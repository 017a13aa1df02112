"""Secrets and per-tenant values in mappings are references, never literals: `env:NAME`.

NAME may contain `{TENANT}`, replaced by the tenant's slug upper-cased with '-' as '_'
(`env:{TENANT}_CRM_URL` for tenant `clinic-1` reads `CLINIC_1_CRM_URL`).

A variable is looked up in the process environment, then in the `.env` file of the working
directory (the same file the settings come from), re-read when it changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from dotenv import dotenv_values

from hub.core.errors import ConfigError
from hub.core.tenants import env_name

PREFIX = "env:"
_NAME = re.compile(r"^[A-Za-z_{][A-Za-z0-9_{}]*$")


class MissingEnv(ConfigError):
    """An `env:` reference names a variable that is not set."""

    code = "missing_env"

    def __init__(self, variable: str, where: str | None = None) -> None:
        super().__init__(
            f"environment variable {variable} is not set" + (f" ({where})" if where else "")
        )
        self.variable = variable


class ProcessEnvironment(Mapping[str, str]):
    """os.environ, falling back to `./.env` (parsed by python-dotenv, cached by mtime)."""

    _cache: tuple[float, dict[str, str]] = (-1.0, {})

    def _dotenv(self) -> dict[str, str]:
        path = Path(".env")
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        if mtime != self._cache[0]:
            values = {k: v for k, v in dotenv_values(path).items() if v is not None}
            type(self)._cache = (mtime, values)
        return self._cache[1]

    def __getitem__(self, name: str) -> str:
        value = os.environ.get(name)
        if value is None:
            return self._dotenv()[name]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter({**self._dotenv(), **os.environ})

    def __len__(self) -> int:
        return len({**self._dotenv(), **os.environ})


ENVIRONMENT = ProcessEnvironment()


def is_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def valid_ref(value: str) -> bool:
    """Whether an `env:` reference is well formed (only `{TENANT}` as a placeholder)."""
    name = value[len(PREFIX) :]
    return bool(_NAME.match(name)) and not re.sub(r"\{TENANT\}", "", name).count("{")


def variable_name(value: str, tenant_slug: str | None) -> str:
    """The variable an `env:` reference reads for this tenant."""
    name = value[len(PREFIX) :]
    if "{TENANT}" in name:
        if tenant_slug is None:
            raise ConfigError(f"{value} needs a tenant")
        name = name.replace("{TENANT}", env_name(tenant_slug))
    return name


def resolve(
    value: str,
    tenant_slug: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    where: str | None = None,
) -> str:
    """The plain value, or the referenced variable's value; MissingEnv when it is unset."""
    if not is_ref(value):
        return value
    env = ENVIRONMENT if environ is None else environ
    name = variable_name(value, tenant_slug)
    resolved = env.get(name)
    if resolved is None or resolved == "":
        raise MissingEnv(name, where)
    return resolved


def resolve_optional(
    value: str | None, tenant_slug: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Like `resolve`, but an unset variable (or None) gives None."""
    if value is None:
        return None
    try:
        return resolve(value, tenant_slug, environ)
    except MissingEnv:
        return None

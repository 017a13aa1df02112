"""Secrets and per-tenant values in mappings are references, never literals.

`env:NAME` reads an environment variable. NAME may contain `{TENANT}`, replaced by the tenant's
slug upper-cased with '-' as '_' (`env:{TENANT}_CRM_URL` for tenant `clinic-1` reads
`CLINIC_1_CRM_URL`). A variable is looked up in the process environment, then in the `.env` file
of the working directory (the same file the settings come from), re-read when it changes.

`secret:NAME` reads the tenant's secret NAME from the database (`hub secrets set`, see
hub.core.secrets), and when that tenant has none, the variable `{TENANT}_NAME` as `env:` would
(so a deployment can move its credentials from the environment to the database one at a time).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

from dotenv import dotenv_values

from hub.core.errors import ConfigError
from hub.core.tenants import env_name

PREFIX = "env:"
SECRET_PREFIX = "secret:"
_NAME = re.compile(r"^[A-Za-z_{][A-Za-z0-9_{}]*$")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SecretLookup(Protocol):
    """Tenant secrets as a process sees them (hub.core.secrets.SecretCache)."""

    def get(self, tenant_slug: str, name: str) -> str | None: ...


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


class MissingSecret(MissingEnv):
    """A `secret:` reference names a secret the tenant has not set (nor its variable)."""

    code = "missing_secret"

    def __init__(self, name: str, tenant_slug: str, variable: str, where: str | None) -> None:
        ConfigError.__init__(
            self,
            f"secret {name} of tenant {tenant_slug} is not set (hub secrets set --tenant "
            f"{tenant_slug} {name}), nor is {variable}" + (f" ({where})" if where else ""),
        )
        self.variable = variable


def is_ref(value: object) -> bool:
    return isinstance(value, str) and (value.startswith(PREFIX) or value.startswith(SECRET_PREFIX))


def is_secret_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SECRET_PREFIX)


def valid_ref(value: str) -> bool:
    """Whether a reference is well formed (`env:` with only `{TENANT}` as a placeholder)."""
    if is_secret_ref(value):
        return bool(SECRET_NAME.match(value[len(SECRET_PREFIX) :]))
    name = value[len(PREFIX) :]
    return bool(_NAME.match(name)) and not re.sub(r"\{TENANT\}", "", name).count("{")


def variable_name(value: str, tenant_slug: str | None) -> str:
    """The variable a reference reads for this tenant (for `secret:`, its fallback)."""
    if is_secret_ref(value):
        if tenant_slug is None:
            raise ConfigError(f"{value} needs a tenant")
        return f"{env_name(tenant_slug)}_{value[len(SECRET_PREFIX) :]}"
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
    secrets: SecretLookup | None = None,
) -> str:
    """The plain value, or what the reference names; MissingEnv (MissingSecret) when unset."""
    if not is_ref(value):
        return value
    env = ENVIRONMENT if environ is None else environ
    name = variable_name(value, tenant_slug)
    if is_secret_ref(value):
        assert tenant_slug is not None  # variable_name raised otherwise
        secret_name = value[len(SECRET_PREFIX) :]
        found = secrets.get(tenant_slug, secret_name) if secrets is not None else None
        if found:
            return found
        fallback = env.get(name)
        if not fallback:
            raise MissingSecret(secret_name, tenant_slug, name, where)
        return fallback
    resolved = env.get(name)
    if resolved is None or resolved == "":
        raise MissingEnv(name, where)
    return resolved


def resolve_optional(
    value: str | None,
    tenant_slug: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets: SecretLookup | None = None,
) -> str | None:
    """Like `resolve`, but an unset variable or secret (or None) gives None."""
    if value is None:
        return None
    try:
        return resolve(value, tenant_slug, environ, secrets=secrets)
    except MissingEnv:
        return None

"""What every `hub` command shares: errors end the command cleanly, settings come from the
environment.

A HubError raised anywhere below a command is printed as one line on stderr (`hub: error: …`)
and ends the process with the error's exit code (2), never with a traceback.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from hub.core.errors import HubError, SettingError
from hub.core.settings import Settings


class HubGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HubError as exc:
            click.echo(f"hub: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a bad value raises SettingError naming the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise SettingError(f"HUB_{field.upper()}", first["msg"]) from exc

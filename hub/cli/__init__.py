"""`hub`: one click group, one operator verb per command.

Every command reads its settings from `HUB_*` variables and `.env`; a HubError ends the command
with its message on stderr (prefixed `hub: error:`) and its exit code (2), never a traceback.
Each command group lives in its own module here and is added below.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from hub.errors import HubError, SettingError
from hub.settings import Settings


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


@click.group(cls=HubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub")
def cli() -> None:
    """hub: webhooks in, durable events, declarative mappings, reliable deliveries out."""


def main() -> None:
    cli(prog_name="hub")


from hub.cli import (  # noqa: E402
    bench,
    demo,
    keys,
    mappings,
    replay,
    run,
    sink,
    status,
)

for _module in (run, keys, mappings, replay, status, bench, demo, sink):
    _module.register(cli)

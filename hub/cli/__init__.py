"""`hub`: one click group, one operator verb per command.

Every command reads its settings from `HUB_*` variables and `.env`; a HubError ends the command
with its message on stderr (prefixed `hub: error:`) and its exit code (2), never a traceback.
Each command group lives in its own module here and is added below.
"""

from __future__ import annotations

import click

from hub.cli.group import HubGroup


@click.group(cls=HubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub")
def cli() -> None:
    """hub: webhooks in, durable events, declarative mappings, reliable deliveries out."""


def main() -> None:
    cli(prog_name="hub")


from hub.cli import (  # noqa: E402
    bench,
    compliance,
    consume,
    demo,
    keys,
    mappings,
    replay,
    run,
    secrets,
    sink,
    status,
    sync,
    tenants,
)

for _module in (
    run,
    consume,
    tenants,
    keys,
    secrets,
    compliance,
    mappings,
    replay,
    status,
    sync,
    bench,
    demo,
    sink,
):
    _module.register(cli)

"""`hub status`: (to be filled by its issue)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""

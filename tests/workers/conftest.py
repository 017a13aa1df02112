"""The delivery tests' fixtures (worker context, rows, a target server), for workers/ tests."""

from tests.delivery.conftest import ctx, sweep, target, world

__all__ = ["ctx", "sweep", "target", "world"]

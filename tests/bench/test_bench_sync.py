"""`hub bench sync` on scratch data: every item created once, then every item a duplicate."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from hub.core.models import IntegrationEvent
from tests.bench.test_bench import hub_bench

pytestmark = pytest.mark.slow


def test_bench_sync_creates_each_item_once_then_finds_them_all_duplicates(
    database_url: str, redis_url: str, engine: Engine
) -> None:
    report = hub_bench(["sync", "--items", "250", "--per-page", "100"], database_url, redis_url)
    assert (report["benchmark"], report["items"], report["pages"]) == ("sync", 250, 3)
    missed, again = report["run_missed"], report["run_duplicates"]
    assert (missed["created"], missed["duplicates"], missed["requests"]) == (250, 0, 4)
    assert (again["created"], again["duplicates"]) == (0, 250)
    assert missed["seconds"] > 0 and again["items_per_s"] > 0
    with engine.connect() as conn:  # scratch data only
        assert conn.scalar(select(func.count()).select_from(IntegrationEvent)) == 0

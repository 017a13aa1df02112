"""hub.core.collector: after start-up the collector frees what is garbage, then leaves the rest."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hub.core.collector import THRESHOLDS, settle


class Node:
    other: object = None


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_frees_cycles_freezes_the_survivors_and_spaces_young_passes() -> None:
    cycle = Node()
    cycle.other = cycle  # only the collector frees it
    gone = weakref.ref(cycle)
    survivor = Node()
    del cycle
    settle()
    assert gone() is None
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700  # Python's default: a pass every 700 allocations
    assert survivor.other is None

"""service.lifecycle.tune_gc: what start-up does to the garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service import lifecycle


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_collections_rarer(restored_gc: None) -> None:
    loaded: list[list[int]] = [[1]]  # stands for what start-up loaded (tracked)
    assert any(o is loaded for o in gc.get_objects())
    _young, middle, old = gc.get_threshold()
    lifecycle.tune_gc()
    # Alive at start-up: out of every later collection's walk.
    assert gc.get_freeze_count() > 0
    assert not any(o is loaded for o in gc.get_objects())
    # Young collections wait for GC_YOUNG_THRESHOLD allocations; the older
    # generations keep CPython's ratios.
    assert gc.get_threshold() == (lifecycle.GC_YOUNG_THRESHOLD, middle, old)
    assert lifecycle.GC_YOUNG_THRESHOLD > 700

"""service.lifecycle.tune_gc and tune_threads: what start-up does to the collector and the GIL."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from service import lifecycle


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_thresholds_kept(restored_gc: None) -> None:
    loaded: list[list[int]] = [[1]]  # stands for what start-up loaded (tracked)
    assert any(o is loaded for o in gc.get_objects())
    threshold = gc.get_threshold()
    lifecycle.tune_gc()
    # Alive at start-up: out of every later collection's walk.
    assert gc.get_freeze_count() > 0
    assert not any(o is loaded for o in gc.get_objects())
    # Made since: collected as before.
    later: list[list[int]] = [[2]]
    assert any(o is later for o in gc.get_objects())
    assert gc.get_threshold() == threshold


@pytest.fixture
def restored_switch_interval() -> Iterator[None]:
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)


def test_threads_hand_the_gil_over_sooner_than_cpythons_default(
    restored_switch_interval: None,
) -> None:
    # CPython's default (5 ms) is what a writer thread back from the
    # database waited per round trip while the event loop held the GIL.
    sys.setswitchinterval(0.005)
    lifecycle.tune_threads()
    assert sys.getswitchinterval() == pytest.approx(lifecycle.WRITER_SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() < 0.005

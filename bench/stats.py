"""Small statistics helpers (no numpy needed on the hot path)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values: Iterable[float], digits: int = 2) -> dict[str, float | int | None]:
    """count, min, mean, p50, p90, p99, max (ms in, ms out), nearest-rank percentiles."""
    data = sorted(values)
    if not data:
        return {
            "count": 0,
            "min": None,
            "mean": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
        }

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "count": len(data),
        "min": r(data[0]),
        "mean": r(sum(data) / len(data)),
        "p50": r(percentile(data, 50)),
        "p90": r(percentile(data, 90)),
        "p99": r(percentile(data, 99)),
        "max": r(data[-1]),
    }


def add_counts(into: dict[str, int], other: dict[str, int]) -> dict[str, int]:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value
    return into

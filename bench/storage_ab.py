"""Reads A/B: a baseline checkout's selectors against this tree's, on one
filled database, alternating per sample (docs/scaling.md).

    .venv/bin/python -m bench.storage --rows 20000000 --database-url URL
    git worktree add --detach ../baseline main
    .venv/bin/python -m bench.storage_ab --database-url URL --baseline ../baseline

Each sample reads one random user's ``since`` replay of 500 (or first page
of 50) through both modules, in alternating order, and asserts the two
answers are equal; on a shared machine both then see the same load, which
separate runs do not. Prints one JSON object of p50/p99/max in ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.django_env import setup_django  # noqa: E402 - after the path above


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_ab", description=__doc__)
    parser.add_argument("--database-url", required=True, help="filled by bench.storage")
    parser.add_argument("--baseline", required=True, help="a checkout to compare with")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--users", type=int, default=20_000, help="bench.storage's users")
    args = parser.parse_args(argv)
    setup_django(args.database_url)
    from notifications import selectors
    from service import lifecycle

    baseline = _load(Path(args.baseline) / "notifications" / "selectors.py")
    # Its statements too: the selectors call wire_sql, which the import above
    # resolved to this tree's module.
    vars(baseline)["wire_sql"] = _load(Path(args.baseline) / "notifications" / "wire_sql.py")
    sides = {"baseline": baseline, "tree": selectors}
    lifecycle.tune_gc()  # as a server process after start-up (bench.storage)
    result = {
        name: compare(sides, name, args.samples, args.users)
        for name in ("since_500", "first_page_50")
    }
    print(json.dumps(result, indent=2))
    return 0


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"baseline_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def compare(sides: dict[str, Any], name: str, samples: int, users: int) -> dict[str, Any]:
    rng = random.Random(11)  # noqa: S311 - which users to read, not a secret
    times: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides)
    for sample in range(samples + 50):  # the first 50 warm up
        who = f"user-{rng.randrange(users)}"
        answers = {}
        for side in order if sample % 2 else reversed(order):
            start = time.perf_counter()
            answers[side] = read(sides[side], name, who)
            if sample >= 50:
                times[side].append((time.perf_counter() - start) * 1000)
        first, *rest = answers.values()
        assert all(answer == first for answer in rest), who
    return {side: percentiles(values) for side, values in times.items()}


def read(module: Any, name: str, who: str) -> Any:
    if name == "first_page_50":
        return module.notifications_page(user_id=who, limit=50).results
    last = module.sequence_state(user_id=who).last_id
    return module.notifications_after(user_id=who, after=max(0, last - 500), limit=500)


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(values[len(values) // 2], 2),
        "p99": round(values[int(len(values) * 0.99) - 1], 2),
        "max": round(values[-1], 2),
    }


if __name__ == "__main__":
    raise SystemExit(main())

"""One plan per loader process: its users and its share of each phase."""

from __future__ import annotations

import argparse

from bench.loader import Phase, WorkerPlan
from bench.target import Target


def split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def make_plans(
    args: argparse.Namespace, target: Target, run_id: str, phases: list[Phase]
) -> list[WorkerPlan]:
    workers = max(1, min(args.workers, args.sockets or 1))
    plans = []
    first = 0
    for w in range(workers):
        n_users = split(args.sockets, workers, w)
        users = list(range(first, first + n_users))
        first += n_users
        worker_phases = []
        for ph in phases:
            if ph.mode == "idle":
                worker_phases.append(Phase("idle", hold_s=ph.hold_s))
            elif ph.mode == "max":
                worker_phases.append(
                    Phase(
                        "max",
                        count=split(ph.count, workers, w),
                        concurrency=max(1, split(ph.concurrency, workers, w)),
                    )
                )
            else:
                worker_phases.append(
                    Phase(
                        "rate",
                        count=split(ph.count, workers, w),
                        rate=ph.rate / workers,
                        concurrency=max(1, split(ph.concurrency, workers, w)),
                        start_offset_s=w / ph.rate,
                    )
                )
        plans.append(
            WorkerPlan(
                index=w,
                workers=workers,
                run_id=run_id,
                urls=target.urls,
                users=users,
                api_key=target.api_key,
                jwt_secret=target.jwt_secret,
                scenario=args.scenario,
                batch=args.batch,
                phases=worker_phases,
                ramp_per_s=args.ramp_per_s / workers,
                connect_concurrency=args.connect_concurrency,
                drain_timeout=args.drain_timeout,
                http_client=args.http_client,
                payload_bytes=args.payload_bytes,
                jwt_audience=args.jwt_audience,
                jwt_issuer=args.jwt_issuer,
                compression=None if args.compression == "none" else "deflate",
                warmup=not args.no_warmup,
                transport=args.transport,
            )
        )
    return plans

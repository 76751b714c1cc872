"""The sweep plot: end-to-end latency percentiles against offered rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_sweep(lines: list[dict[str, Any]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(
        ((line["params"]["rate"], line) for line in lines if line["params"].get("rate")),
        key=lambda point: point[0],
    )
    rates = [rate for rate, _ in points]
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    for key, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-"), ("max", "x:")):
        values = [line["latency_ms"][key] for _, line in points]
        ax.plot(rates, values, style, label=key)
    for rate, line in points:
        lost = line["deliveries"]["lost"]
        bad = sum(line["posts"]["non_202"].values())
        if lost or bad:
            ax.annotate(
                f"lost {lost}, non-202 {bad}",
                (rate, line["latency_ms"]["p99"] or 0),
                textcoords="offset points",
                xytext=(4, 8),
                fontsize=8,
                color="red",
            )
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end latency (ms, log)")
    first = points[0][1] if points else {}
    target = first.get("target", {})
    ax.set_title(
        f"{first.get('scenario', '')}: {first.get('sockets', {}).get('opened', '?')} sockets, "
        f"{len(target.get('urls', []))} server(s), layer {target.get('redis_layer')}, "
        f"db {target.get('database')}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()

    achieved = [line["posts"]["per_s"] or 0 for _, line in points]
    ax2.plot(rates, rates, "k--", linewidth=0.8, label="offered")
    ax2.plot(rates, achieved, "o-", label="accepted POSTs/s")
    ax2.set_xlabel("offered rate (POSTs/s)")
    ax2.set_ylabel("POSTs/s")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Shared helpers of the datasets benchmarks: a private local Ray cluster, a small set, a table."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@contextlib.contextmanager
def ray_cluster(num_cpus: int):
    """A local cluster of our own (stopped on exit; never `ray stop`), with the driver connected."""
    import ray

    from wanray.raycluster.local import start_head, stop

    cluster = start_head(num_cpus=num_cpus)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield cluster
    finally:
        ray.shutdown()
        stop(cluster)


def render_set(root: Path, n: int, *, seed: int = 0, height: int, width: int, frames: int, fps: float = 15.0) -> Path:
    """A synthetic set rendered in this process (for the ingest and cache benchmarks)."""
    from wanray.datasets.schema import write_manifest
    from wanray.datasets.synth import SynthConfig, plan_entry, render_entry

    config = SynthConfig(n=n, out=root, seed=seed, height=height, width=width, frames=frames, fps=fps)
    write_manifest(root, [render_entry(config, plan_entry(config, i)) for i in range(n)])
    return root


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{title}  ({os.cpu_count()} CPUs, load average {load})")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")

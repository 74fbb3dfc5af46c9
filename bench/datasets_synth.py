"""Synthetic generator throughput: entries/s, one process vs Ray Data tasks, and where the time goes.

    python bench/datasets_synth.py                       # 8 entries, 128x128, 81 frames (the quick set's shape)
    python bench/datasets_synth.py --n 16 --cpus 2

Baseline: the same per-entry code run sequentially in this process. Prints a table of seconds,
entries/s and the ratio to the baseline measured in the same run, then a per-stage breakdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from datasets_common import print_table, ray_cluster, timed  # noqa: E402


def stages(config, index: int) -> list[list]:
    """Milliseconds per entry of each rendering stage (in this process)."""
    import numpy as np

    from wanray.datasets.pose import render_pose_video, skeleton_at
    from wanray.datasets.render import render_anime_frames, render_photo
    from wanray.datasets.synth import plan_entry
    from wanray.video import write_mp4

    plan = plan_entry(config, index)
    pl = plan.placement
    _, photo_s = timed(
        lambda: render_photo(plan.character, skeleton_at(plan.dance, 0), pl, plan.layout, np.random.default_rng(0))
    )
    anime, anime_s = timed(
        lambda: render_anime_frames(plan.character, plan.dance, pl, plan.layout, config.frames, config.fps)
    )
    pose, pose_s = timed(lambda: render_pose_video(plan.dance, pl.height, pl.width, config.frames, config.fps))
    with tempfile.TemporaryDirectory() as tmp:
        _, mp4_s = timed(
            lambda: (
                write_mp4(anime, Path(tmp) / "a.mp4", config.fps),
                write_mp4(pose, Path(tmp) / "p.mp4", config.fps),
            )
        )
    return [
        ["photo (1 frame)", photo_s * 1e3],
        [f"anime video ({config.frames} frames)", anime_s * 1e3],
        [f"pose video ({config.frames} frames)", pose_s * 1e3],
        ["2 x h264 encode", mp4_s * 1e3],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="logical CPUs of the benchmark's Ray cluster")
    args = parser.parse_args()

    from wanray.datasets.schema import write_manifest
    from wanray.datasets.synth import SynthConfig, generate, plan_entry, render_entry

    shape = dict(height=args.height, width=args.width, frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        seq = SynthConfig(n=args.n, out=Path(tmp) / "seq", **shape)
        _, seq_s = timed(lambda: write_manifest(seq.out, [render_entry(seq, plan_entry(seq, i)) for i in range(seq.n)]))
        with ray_cluster(args.cpus):
            par = SynthConfig(
                n=args.n, out=Path(tmp) / "ray", entries_per_task=max(1, args.n // (2 * args.cpus)), **shape
            )
            _, ray_s = timed(lambda: generate(par))
        breakdown = stages(seq, 0)
    rows = [
        ["one process, sequential (baseline)", args.n, seq_s, args.n / seq_s, 1.0],
        [f"Ray Data tasks ({args.cpus} CPUs, incl. start of tasks)", args.n, ray_s, args.n / ray_s, seq_s / ray_s],
    ]
    print_table(
        f"synthetic entries at {args.width}x{args.height}, {args.frames} frames",
        ["method", "entries", "seconds", "entries/s", "speed-up"],
        rows,
    )
    total = sum(ms for _, ms in breakdown)
    print_table("one entry, by stage", ["stage", "ms", "share"], [[s, ms, f"{ms / total:.0%}"] for s, ms in breakdown])


if __name__ == "__main__":
    main()

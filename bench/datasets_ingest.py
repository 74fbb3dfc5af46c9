"""Ingest throughput: decoded rows/s (PNG + target video + pose video, fitted and frame-sampled).

    python bench/datasets_ingest.py                      # 160 rows (8 rendered entries x 20), 128x128, 81 frames
    python bench/datasets_ingest.py --root data/quick    # an existing set

Baseline: ``decode_entry`` on every row, sequentially, in this process. Ours: ``read_split`` (Ray
Data ``map_batches`` tasks), consumed with ``iter_rows`` as a training loop does. Prints seconds,
rows/s and the ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from datasets_common import print_table, ray_cluster, render_set, timed  # noqa: E402


def repeat_rows(root: Path, times: int) -> None:
    """More rows without more rendering: each entry's files under ``times`` ids (decoding cost per row is unchanged)."""
    from wanray.datasets.schema import read_manifest, write_manifest

    rows = [r.record() for r in read_manifest(root)]
    write_manifest(root, [{**r, "id": f"{r['id']}-{k}"} for k in range(times) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="dataset to read (default: render one)")
    parser.add_argument("--n", type=int, default=8, help="entries to render (when no --root)")
    parser.add_argument("--repeat", type=int, default=20, help="rows per rendered entry (same files, new ids)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="logical CPUs of the benchmark's Ray cluster")
    args = parser.parse_args()

    from wanray.datasets.ingest import IngestConfig, decode_entry, entry_table, read_split
    from wanray.datasets.shape import VideoShape

    shape = VideoShape(height=args.height, width=args.width, frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        if args.root:
            root = Path(args.root)
        else:
            root = render_set(Path(tmp) / "set", args.n, height=args.height, width=args.width, frames=args.frames)
            repeat_rows(root, args.repeat)
        table = entry_table(IngestConfig(root=root, split="all", shape=shape))
        _, seq_s = timed(lambda: [decode_entry(e, shape) for e in table])
        with ray_cluster(args.cpus):

            def consume():
                ds = read_split(root, "all", height=args.height, width=args.width, frames=args.frames)
                return sum(1 for _ in ds.iter_rows())

            count, ray_s = timed(consume)
            assert count == len(table)
    n = len(table)
    rows = [
        ["decode_entry, one process (baseline)", n, seq_s, n / seq_s, 1.0],
        [f"read_split + iter_rows, Ray Data ({args.cpus} CPUs)", n, ray_s, n / ray_s, seq_s / ray_s],
    ]
    print_table(
        f"ingest to {args.width}x{args.height}, {args.frames} frames (photo + 2 videos per row)",
        ["method", "rows", "seconds", "rows/s", "speed-up"],
        rows,
    )


if __name__ == "__main__":
    main()

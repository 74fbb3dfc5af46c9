"""What the latent cache saves per training sample: decode + frozen encoders vs reading the cache.

    python bench/datasets_cache.py                       # 3 entries, 128x128, 81 frames, embedded model, CPU
    python bench/datasets_cache.py --height 64 --width 64 --frames 17 --n 4

Per entry, in this process: the pixel path a training step would pay (decode the row, then
``encode_sample``: VAE on target, first frame and VACE video, umT5, CLIP) vs the cache path (a cached
Parquet row to tensors with ``row_to_tensors``; and the same through ``read_latent_cache``, whose
Ray Data job start is amortised over only a few rows here). Building the cache is timed too (a
one-off cost: Ray Data actor pool, model load included). A whole training epoch from cache vs from
pixels needs ``wanray.training``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from datasets_common import print_table, ray_cluster, render_set, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()

    from wanray.config import ModelConfig
    from wanray.datasets.cache import CacheConfig, build_cache, inputs_for_model, read_latent_cache, row_to_tensors
    from wanray.datasets.ingest import IngestConfig, decode_entry, entry_table, row_to_sample
    from wanray.datasets.shape import VideoShape
    from wanray.encoding import encode_sample
    from wanray.generation import WanGenerator

    shape = VideoShape(height=args.height, width=args.width, frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        root = render_set(Path(tmp) / "set", args.n, height=args.height, width=args.width, frames=args.frames)
        table = entry_table(IngestConfig(root=root, split="all", shape=shape))
        generator = WanGenerator.load(ModelConfig(model="embedded"))
        pipe, spec = generator.pipe, generator.spec
        encode_sample(pipe, inputs_for_model(row_to_sample(decode_entry(table[0], shape)), spec))  # warm-up
        decoded, decode_s = timed(lambda: [decode_entry(e, shape) for e in table])
        _, encode_s = timed(lambda: [encode_sample(pipe, inputs_for_model(row_to_sample(r), spec)) for r in decoded])
        with ray_cluster(args.cpus):
            config = CacheConfig(root=root, out=Path(tmp) / "cache", split="all", shape=shape)
            _, build_s = timed(lambda: build_cache(config))
            _, ray_read_s = timed(lambda: [row_to_tensors(r) for r in read_latent_cache(config.out, "all").iter_rows()])
        import pyarrow.parquet as pq

        def read_rows():
            return [row_to_tensors(r) for r in pq.read_table(next(config.out.glob("*/all"))).to_pylist()]

        tensors, read_s = timed(read_rows)
        megabytes = sum(t.numel() * t.element_size() for d in tensors for t in d.values()) / len(tensors) / 1e6
    n = len(table)
    pixels = (decode_s + encode_s) / n
    cached = read_s / n
    print_table(
        f"per entry, embedded model on CPU, {args.width}x{args.height}, {args.frames} frames, {n} entries",
        ["path", "seconds/entry", "ratio to pixels"],
        [
            ["pixels: decode", decode_s / n, ""],
            ["pixels: encode_sample", encode_s / n, ""],
            ["pixels: total (baseline)", pixels, 1.0],
            [f"cache: Parquet row -> tensors ({megabytes:.1f} MB of tensors per entry)", cached, cached / pixels],
            [
                "cache: read_latent_cache + iter_rows (incl. Ray Data job start)",
                ray_read_s / n,
                ray_read_s / n / pixels,
            ],
            ["cache: building it (one-off, Ray actor pool, incl. model load)", build_s / n, build_s / n / pixels],
        ],
    )


if __name__ == "__main__":
    main()

"""One training epoch of the embedded LoRA preset from the latent cache vs from pixels, on this CPU.

    .venv/bin/python bench/train_epoch_cache.py [--n 8] [--size 64] [--frames 9]

Renders a small synthetic set, builds its latent cache once (timed separately: a one-off cost), then
runs the same one-epoch LoRA training twice on a local Ray cluster: rows encoded on the worker
(pixels) and rows read from the cache. Prints a table of seconds and the ratio to the pixel run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=9)
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from wanray.datasets.cache import CacheConfig, build_cache
    from wanray.datasets.shape import VideoShape
    from wanray.datasets.synth import SynthConfig, generate
    from wanray.raycluster.local import start_head, stop
    from wanray.training.config import apply_overrides
    from wanray.training.presets import embedded_lora
    from wanray.training.trainer import run

    work = Path(tempfile.mkdtemp(prefix="wanray-epoch-"))
    cluster = start_head(num_cpus=8)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        generate(SynthConfig(n=args.n, out=work / "data", height=args.size, width=args.size,
                             frames=args.frames + 8))
        data = work / "data"
        shape = VideoShape(height=args.size, width=args.size, frames=args.frames, fps=15)
        started = time.perf_counter()
        build_cache(CacheConfig(root=data, out=work / "cache", split="all", shape=shape))
        cache_s = time.perf_counter() - started
        rows = []
        for label, cache in (("pixels (encode on the worker)", None), ("latent cache", work / "cache")):
            overrides = [f"data.dataset={data}", f"data.height={args.size}", f"data.width={args.size}",
                         f"data.frames={args.frames}", "epochs=1", "validation.every_steps=0",
                         f"output_dir={work / 'runs'}", f"name=epoch_{len(rows)}"]
            if cache is not None:
                overrides.append(f"data.latent_cache={cache}")
            config = apply_overrides(embedded_lora(), overrides)
            started = time.perf_counter()
            result = run(config)
            if result.error:
                raise RuntimeError(f"{label}: {result.error}")
            rows.append({"source": label, "epoch_s": round(time.perf_counter() - started, 1)})
        for row in rows:
            row["vs pixels"] = round(rows[0]["epoch_s"] / row["epoch_s"], 2)
        print(f"\none epoch, embedded LoRA, {args.n} entries at {args.size}x{args.size}x{args.frames} "
              f"(cache built once in {cache_s:.1f} s, not counted)")
        print(table(rows, ["source", "epoch_s", "vs pixels"]))
    finally:
        ray.shutdown()
        stop(cluster)


if __name__ == "__main__":
    main()

"""The embedded model on this machine's CPU: one 128x128, 77-frame (5.1 s at 15 fps) clip, ours vs DiffSynth.

    .venv/bin/python bench/embedded_generation.py [--frames 77] [--steps 12] [--repeats 3]

Goal (issue 2): <= 30 s on the 2-core box. The baseline is the same pipeline with DiffSynth's own CPU
paths (the VAE in the pipeline's float32, torch conv3d in it, DiffSynth's tiled VAE, VACE's all-zero clip encoded
every time, float64 RoPE, unfused RMSNorm), measured in the same run. The two paths
alternate, ``--repeats`` clips each, and the table gives each path's median: a single clip of each moved the ratio
by +-8% between back-to-back runs on a shared 2-core box.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402

from wanray import GenerationConfig, ModelConfig, accel  # noqa: E402
from wanray.cli_generate import EXAMPLE_PHOTO, EXAMPLE_PROMPT  # noqa: E402
from wanray.generation import WanGenerator  # noqa: E402


def load_diffsynth_paths() -> WanGenerator:
    """The embedded model with what our adapter changes on CPU undone, leaving DiffSynth's own code paths: the VAE
    in the pipeline's float32, torch conv3d, DiffSynth's tiled VAE, every encode run."""
    from diffsynth.models.wan_video_vae import WanVideoVAE

    generator = WanGenerator.load(ModelConfig(model="embedded", device="cpu", vae_dtype="float32"))
    for module in generator.pipe.vae.modules():
        if isinstance(module, torch.nn.Conv3d) and "_conv_forward" in module.__dict__:
            del module._conv_forward
    generator.pipe.vae.__class__ = WanVideoVAE
    vars(generator.pipe.vae).pop("encode", None)  # accel.memoize_zero_clip_encodes: back to WanVideoVAE.encode
    return generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="clips per path, alternating (default 3)")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats: at least 1")
    config = GenerationConfig(image=EXAMPLE_PHOTO, prompt=EXAMPLE_PROMPT, frames=args.frames, steps=args.steps)
    # RoPE is one module-level function for every DiT in the process: each path sets its own before each clip
    paths = {"ours": (WanGenerator.load(ModelConfig(model="embedded", device="cpu")), accel.apply_fast_dit_kernels),
             "DiffSynth CPU paths": (load_diffsynth_paths(), accel.restore_diffsynth_kernels)}
    seconds: dict[str, list[float]] = {label: [] for label in paths}
    for _ in range(args.repeats):
        for label, (generator, use_kernels) in paths.items():
            use_kernels(generator.pipe.dit, generator.pipe.vace)
            started = time.perf_counter()
            result = generator.generate(config)
            seconds[label].append(time.perf_counter() - started)
    rows = []
    for label, times in seconds.items():
        rows.append({"path": label, "seconds": round(statistics.median(times), 1),
                     "min-max": f"{min(times):.1f}-{max(times):.1f}", "frames": len(result.frames),
                     "size": f"{result.frames[0].width}x{result.frames[0].height}", "steps": result.info["steps"]})
    base = rows[1]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
        row["goal <= 30 s"] = "met" if row["seconds"] <= 30 else f"missed by {row['seconds'] - 30:.1f} s"
    print(f"\nembedded model, {torch.get_num_threads()} CPU threads, median of {args.repeats} clips per path")
    print(table(rows, ["path", "seconds", "min-max", "speedup", "frames", "size", "steps", "goal <= 30 s"]))


if __name__ == "__main__":
    main()

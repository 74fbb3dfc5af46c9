"""The embedded model on this machine's CPU: one 128x128, 77-frame (5.1 s at 15 fps) clip, ours vs DiffSynth.

    .venv/bin/python bench/embedded_generation.py [--frames 77] [--steps 12]

Goal (issue 2): <= 30 s on the 2-core box. The baseline is the same pipeline with DiffSynth's own CPU
paths (torch conv3d in the VAE, DiffSynth's tiled VAE, float64 RoPE), measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402

from wanray import GenerationConfig, ModelConfig  # noqa: E402
from wanray.cli_generate import EXAMPLE_PHOTO, EXAMPLE_PROMPT  # noqa: E402
from wanray.generation import WanGenerator  # noqa: E402


def diffsynth_defaults(generator: WanGenerator) -> None:
    """Undo what our adapter changes on CPU, leaving DiffSynth's own code paths."""
    from diffsynth.models.wan_video_vae import WanVideoVAE

    from wanray import accel

    for module in generator.pipe.vae.modules():
        if isinstance(module, torch.nn.Conv3d) and "_conv_forward" in module.__dict__:
            del module._conv_forward
    generator.pipe.vae.__class__ = WanVideoVAE
    accel.restore_diffsynth_kernels(generator.pipe.dit, generator.pipe.vace)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args()
    config = GenerationConfig(image=EXAMPLE_PHOTO, prompt=EXAMPLE_PROMPT, frames=args.frames, steps=args.steps)
    rows = []
    for label in ("ours", "DiffSynth CPU paths"):
        generator = WanGenerator.load(ModelConfig(model="embedded", device="cpu"))
        if label != "ours":
            diffsynth_defaults(generator)
        started = time.perf_counter()
        result = generator.generate(config)
        seconds = time.perf_counter() - started
        rows.append({"path": label, "seconds": round(seconds, 1), "frames": len(result.frames),
                     "size": f"{result.frames[0].width}x{result.frames[0].height}", "steps": result.info["steps"]})
    base = rows[1]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
        row["goal <= 30 s"] = "met" if row["seconds"] <= 30 else f"missed by {row['seconds'] - 30:.1f} s"
    print(f"\nembedded model, {torch.get_num_threads()} CPU threads")
    print(table(rows, ["path", "seconds", "speedup", "frames", "size", "steps", "goal <= 30 s"]))


if __name__ == "__main__":
    main()

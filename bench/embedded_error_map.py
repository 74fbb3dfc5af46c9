"""Where the embedded model's error sits: the scene or the dancer, flat colour or edges (CPU).

    nice -n 10 .venv/bin/python bench/embedded_error_map.py --label run13-2core-cpu              # shipped model
    nice -n 10 .venv/bin/python bench/embedded_error_map.py --model DIR --entries 8 --label NAME  # other weights

On the first ``--entries`` unseen entries of ``bench/embedded_targets.py`` (seed 1234, 128x128, 77 frames), it
splits the squared error of the VAE round trip of the reference clip, and of the generated clip (as
``wanray demo``), by pixel class, from the renderer's own truth (``wanray.datasets.truth``):
- scene: the pixel equals the frame rendered without the character; dancer: every other pixel;
- edges: within one pixel of a grey-level Sobel magnitude above 60 in the reference (outlines, thin limbs, the
  city's windows); flat: the rest;
- the identity regions (hair, top, bottom) as the targets score them.
Per class: its share of the pixels, its share of the squared error, and the PSNR within it. A class holding most
of the error on few pixels is where the model's capacity runs out. Writes bench/results/embedded_error_map_LABEL.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from embedded_targets import (  # noqa: E402
    FPS, RESULTS, dancer_pixels, generate, md_table, pooled_psnr, squared_error, vae_round_trip)
from gpu_common import table  # noqa: E402

from wanray import ModelConfig  # noqa: E402
from wanray.datasets.synth import SynthConfig, plan_entry, render_media  # noqa: E402
from wanray.datasets.truth import REGIONS, ClipTruth, clip_truth  # noqa: E402
from wanray.generation import WanGenerator  # noqa: E402
from wanray.video import frames_to_array  # noqa: E402

EDGE_SOBEL = 60.0  # grey-level Sobel magnitude (0-255 pixels) that counts as an edge


def pixel_classes(reference: np.ndarray, truth: ClipTruth) -> dict:
    """Class name -> [T, H, W] bool. reference: uint8 [T, H, W, 3]."""
    scene = ~dancer_pixels(reference, truth)
    grey = reference.astype(np.float32).mean(-1)
    edges = np.hypot(ndimage.sobel(grey, axis=1), ndimage.sobel(grey, axis=2)) > EDGE_SOBEL
    edges = ndimage.binary_dilation(edges, structure=np.ones((1, 3, 3), bool))  # per frame, not across time
    classes = {"all": np.ones_like(scene), "scene": scene, "scene, flat": scene & ~edges,
               "scene, edges": scene & edges, "dancer": ~scene, "dancer, flat": ~scene & ~edges,
               "dancer, edges": ~scene & edges}
    return classes | {f"dancer: {r}": truth.masks[r] for r in REGIONS}


class ErrorTally:
    """Sums of squared error and pixel counts per class, over entries."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, output: np.ndarray, reference: np.ndarray, classes: dict[str, np.ndarray]) -> None:
        se = squared_error(output, reference)  # [T, H, W]
        for name, mask in classes.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(se[mask].sum())
            self.counts[name] = self.counts.get(name, 0) + int(mask.sum())

    def rows(self) -> list[dict]:
        total_se, total_px = self.sums["all"], self.counts["all"]
        return [{"pixels": name, "share of pixels": f"{self.counts[name] / total_px:.3f}",
                 "share of squared error": f"{self.sums[name] / total_se:.3f}",
                 "PSNR dB": f"{pooled_psnr(self.sums[name], self.counts[name]):.2f}"}
                for name in self.sums if self.counts[name]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded", help="'embedded' (the shipped weights) or a model directory")
    p.add_argument("--entries", type=int, default=8, help="unseen entries of seed 1234 (default 8)")
    p.add_argument("--frames", type=int, default=77, help="frames per clip, 4n+1 (default 77)")
    p.add_argument("--label", required=True, help="names the result file, e.g. run13-2core-cpu")
    p.add_argument("--no-generate", action="store_true", help="the VAE round trip only")
    p.add_argument("--note", default="", help="a line for the report, e.g. where the weights came from")
    args = p.parse_args()
    args.steps = args.cfg = args.sigma_shift = None  # the model's sampling defaults, as the targets use
    args.vace_scale = 1.0
    started = time.perf_counter()
    generator = WanGenerator.load(ModelConfig(model=args.model, device="cpu"))
    config = SynthConfig(n=args.entries, out=Path("unused"), seed=1234, frames=args.frames, fps=FPS)
    tallies = {"VAE round trip": ErrorTally()} | ({} if args.no_generate else {"generated": ErrorTally()})
    for i in range(args.entries):
        plan = plan_entry(config, i)
        media = render_media(plan, args.frames, FPS)
        reference = frames_to_array(media.video)
        truth = clip_truth(plan.character, plan.dance, plan.placement, plan.layout, args.frames, FPS)
        classes = pixel_classes(reference, truth)
        tallies["VAE round trip"].add(vae_round_trip(generator, media.video), reference, classes)
        if not args.no_generate:
            generated = generate(generator, media.photo, plan.prompt, media.pose, args)[0]
            tallies["generated"].add(generated, reference, classes)
        print(f"[{i + 1}/{args.entries}] {plan.id} {plan.scene}", flush=True)
    columns = ["pixels", "share of pixels", "share of squared error", "PSNR dB"]
    lines = [f"# Where the error sits: `{args.label}`", "",
             f"`bench/embedded_error_map.py --label {args.label}` (model `{args.model}`): the first {args.entries} "
             f"entries of seed 1234, 128x128, {args.frames} frames, {time.perf_counter() - started:.0f} s on the CPU. "
             f"Edges: within 1 px of a grey Sobel magnitude > {EDGE_SOBEL:.0f} in the reference.", ""]
    lines += [f"- {args.note}", ""] if args.note else []
    for name, tally in tallies.items():
        rows = tally.rows()
        print(f"\n{name}\n{table(rows, columns)}")
        lines += [f"## {name}", "", md_table(rows, columns), ""]
    path = RESULTS / f"embedded_error_map_{args.label}.md"
    path.write_text("\n".join(lines))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""TeaCache on the trained embedded model, on this machine's CPU: DiT passes computed, time, acceleration gate.

    .venv/bin/python bench/tea_cache_embedded.py [--cases 3] [--seed 2000] [--thresholds 0.03,0.05,0.07,0.1,0.2,0.3]

Each synthetic photo (seed 2000: neither the training set's 0 nor the calibration's 1000), with its dance's pose
video as the VACE input, runs at the model's defaults (128x128, 77 frames, 12 steps, cfg 1: one DiT pass a
step) with TeaCache off, the baseline measured in the same run, then at each threshold with the same seed. Per
threshold: DiT passes computed / total; wall and CPU seconds, and the CPU seconds inside DiffSynth's ``model_fn``
(DiT, VACE, embeddings, head), each with its speed-up against off; and the acceleration gate (``wanray.metrics``:
PSNR >= 32 dB, SSIM >= 0.85) of each video against its own TeaCache-off video, passed when every photo passes.
CPU time is the process's (all threads): other work on a shared box disturbs it far less than wall time.
Writes bench/results/tea_cache_embedded_<N>core_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import RESULTS, table  # noqa: E402

from wanray import GenerationConfig, ModelConfig  # noqa: E402
from wanray.generation import EMBEDDED_MODEL_DIR, WanGenerator  # noqa: E402
from wanray.metrics import acceleration_gate  # noqa: E402
from wanray.tea_cache import synthetic_cases, weights_sha256  # noqa: E402
from wanray.video import frames_to_array  # noqa: E402


class PassCounter:
    """Counts DiT passes (``pipe.model_fn`` calls) and those whose blocks ran; times ``model_fn`` (wall and CPU)."""

    def __init__(self, pipe):
        self.total = self.computed = 0
        self.seconds = self.cpu_seconds = 0.0
        model_fn = pipe.model_fn

        def timed_model_fn(**kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return model_fn(**kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.cpu_seconds += time.process_time() - cpu
                self.total += 1

        pipe.model_fn = timed_model_fn
        pipe.dit.blocks[0].register_forward_hook(lambda *_: setattr(self, "computed", self.computed + 1))

    def take(self) -> dict:
        counts = {"passes": self.total, "computed": self.computed, "denoise_s": self.seconds,
                  "denoise_cpu_s": self.cpu_seconds}
        self.total = self.computed = 0
        self.seconds = self.cpu_seconds = 0.0
        return counts


def model_files() -> dict:
    """What the numbers were measured on: the DiT tensors' hash (the coefficients') and the VAE file's sha256."""
    vae = hashlib.sha256((EMBEDDED_MODEL_DIR / "Wan2.1_VAE.pth").read_bytes()).hexdigest()
    return {"dit_sha256": weights_sha256(EMBEDDED_MODEL_DIR), "vae_file_sha256": vae}


def run(args: argparse.Namespace) -> dict:
    generator = WanGenerator.load(ModelConfig(model="embedded", device="cpu"))
    counter = PassCounter(generator.pipe)
    spec = generator.spec
    frames = 77
    cases = synthetic_cases(args.cases, args.seed, spec.default_height, spec.default_width, frames)
    warm = cases[0]  # the first generation in a process pays one-off costs
    generator.generate(GenerationConfig(image=warm.photo, prompt=warm.prompt, vace_video=warm.pose, steps=2))
    counter.take()
    rows = []
    for i, case in enumerate(cases):
        reference = None
        for threshold in (None, *args.thresholds):  # off first: the reference of this photo
            config = GenerationConfig(image=case.photo, prompt=case.prompt, vace_video=case.pose, frames=frames,
                                      seed=i, tea_cache=threshold)
            started, cpu = time.perf_counter(), time.process_time()
            result = generator.generate(config)
            row = {"case": case.id, "threshold": threshold or 0.0, "wall_s": time.perf_counter() - started,
                   "cpu_s": time.process_time() - cpu, **counter.take()}
            video = frames_to_array(result.frames)
            if reference is None:
                reference = video
            gate = acceleration_gate(video, reference)
            row.update(psnr=min(gate.metrics.psnr_mean, 99.0), ssim=gate.metrics.ssim_mean, gate=gate.passed)
            rows.append(row)
            print(f"  {case.id} threshold {row['threshold']}: {row['computed']}/{row['passes']} passes, "
                  f"{row['wall_s']:.1f} s, PSNR {row['psnr']:.2f}, SSIM {row['ssim']:.4f}", flush=True)
    return {"steps": spec.default_steps, "cfg": spec.default_cfg, "size": [spec.default_height, spec.default_width],
            "frames": frames, "rows": rows}


def summarise(rows: list[dict]) -> list[dict]:
    by_threshold: dict[float, list[dict]] = {}
    for row in rows:
        by_threshold.setdefault(row["threshold"], []).append(row)
    total = lambda group, key: sum(r[key] for r in group)  # noqa: E731
    off = by_threshold[0.0]
    summary = []
    for threshold, group in by_threshold.items():
        passed = sum(r["gate"] for r in group)
        summary.append({
            "threshold": "off" if threshold == 0 else threshold,
            "computed/total": f"{total(group, 'computed')}/{total(group, 'passes')}",
            "wall s": round(total(group, "wall_s"), 1),
            "wall speed-up": f"{total(off, 'wall_s') / total(group, 'wall_s'):.2f}x",
            "CPU s": round(total(group, "cpu_s"), 1),
            "CPU speed-up": f"{total(off, 'cpu_s') / total(group, 'cpu_s'):.2f}x",
            "denoise CPU s": round(total(group, "denoise_cpu_s"), 1),
            "denoise speed-up": f"{total(off, 'denoise_cpu_s') / total(group, 'denoise_cpu_s'):.2f}x",
            "min PSNR dB": "inf" if threshold == 0 else round(min(r["psnr"] for r in group), 2),
            "min SSIM": round(min(r["ssim"] for r in group), 4),
            "gate": "reference" if threshold == 0 else ("pass" if passed == len(group) else f"fail ({passed}/{len(group)})"),
        })
    return summary


def pass_costs(rows: list[dict]) -> dict:
    """CPU seconds of a computed and of a skipped pass, least squares over every run's denoising CPU time. A skipped
    pass is not free: DiffSynth runs the VACE branch, the embeddings and the head before and after the cache."""
    import numpy as np

    counts = np.array([[r["computed"], r["passes"] - r["computed"]] for r in rows], dtype=float)
    (computed, skipped), *_ = np.linalg.lstsq(counts, np.array([r["denoise_cpu_s"] for r in rows]), rcond=None)
    return {"computed_pass_cpu_s": round(float(computed), 3), "skipped_pass_cpu_s": round(float(skipped), 3)}


COLUMNS = ["threshold", "computed/total", "wall s", "wall speed-up", "CPU s", "CPU speed-up", "denoise CPU s",
           "denoise speed-up", "min PSNR dB", "min SSIM", "gate"]


def markdown(summary: list[dict], payload: dict, command: str) -> str:
    lines = [f"# TeaCache on the trained embedded model ({payload['machine']}, no GPU)", "",
             (f"`{command}` ({payload['when']}, torch {payload['torch']}, {payload['threads']} threads): "
             f"{payload['cases']} synthetic photos (seed {payload['seed']}) with their pose videos as VACE input, "
             f"{payload['size'][0]}x{payload['size'][1]}x{payload['frames']}, {payload['steps']} steps, cfg "
             f"{payload['cfg']} ({'two DiT passes' if payload['cfg'] != 1 else 'one DiT pass'} a step), coefficients `wanray-embedded`. Each video is gated "
             "(PSNR >= 32 dB, SSIM >= 0.85) against the same photo and seed with TeaCache off, run in the same "
             "process; sums over the photos, minimum PSNR/SSIM over them. CPU s is the process's CPU time (all "
             "threads): the box is shared, and wall time moved with other work (load average "
             f"{payload['load_average'][0]:.1f} at the start, {payload['load_average'][1]:.1f} at the end). "
             "Denoise is the time inside DiffSynth's model_fn (DiT, VACE, embeddings, head). Model files: DiT "
             f"tensors {payload['model_files']['dit_sha256'][:12]}, VAE file "
             f"{payload['model_files']['vae_file_sha256'][:12]}."), "",
             "| " + " | ".join(COLUMNS) + " |", "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in summary]
    costs = payload["pass_costs"]
    lines += ["", (f"A computed DiT pass took {costs['computed_pass_cpu_s']} CPU s, a skipped one "
                   f"{costs['skipped_pass_cpu_s']} CPU s (least squares over all runs).")]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--thresholds", type=lambda s: tuple(float(v) for v in s.split(",")),
                   default=(0.03, 0.05, 0.07, 0.1, 0.2, 0.3))
    args = p.parse_args()
    load_start, files = os.getloadavg()[0], model_files()
    measured = run(args)
    if model_files() != files:
        raise SystemExit("the embedded model's files changed during the run; run again")
    summary = summarise(measured["rows"])
    machine = f"{os.cpu_count()}-core CPU"
    payload = {"machine": machine, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "when": time.strftime("%Y-%m-%d", time.gmtime()), "cases": args.cases, "seed": args.seed,
               "load_average": [load_start, os.getloadavg()[0]], "model_files": files,
               **measured, "summary": summary, "pass_costs": pass_costs(measured["rows"])}
    print(f"\nTeaCache, embedded model, {machine}")
    print(table(summary, COLUMNS))
    print(f"CPU s per pass: {payload['pass_costs']}")
    stem = RESULTS / f"tea_cache_embedded_{os.cpu_count()}core_cpu"
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    command = " ".join([".venv/bin/python bench/tea_cache_embedded.py", *sys.argv[1:]])
    stem.with_suffix(".md").write_text(markdown(summary, payload, command))
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()

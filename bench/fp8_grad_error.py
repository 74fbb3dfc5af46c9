"""Compare an FP8 LoRA step (torchao float8, emulated on CPU) with the float32 one over many random samples.

    nice -n 10 .venv/bin/python bench/fp8_grad_error.py --draws 200 [--model wanray/embedded_model] [--first-seed 0]

The comparison is the one ``tests/unit/training/test_fp8.py`` asserts on: ``fp8_vs_fp32`` in that folder's
conftest. It runs the ``embedded_lora_smoke`` LoRA step on one random 5-frame 32x32 sample (I2V + VACE) twice, once
in float32 and once with the frozen linears of the DiT/VACE blocks in float8. Both steps get the same sample,
timestep and noise. Sample ``i`` comes from seed ``first_seed + i``, which fixes the frames, the timestep and the
noise. The test uses some of these seeds.

Output:
- a table with one row per draw: the relative difference of the loss, the relative L2 error of the concatenated
  LoRA gradients, and the cosine between the gradients;
- min, median, p95 and max of each column;
- the gradient error by timestep;
- the test's seeds and bounds against this measurement (the numbers to copy into the test's comment);
- where the gradient error sits, by layer kind and by block. For each group: its share of the squared error, its
  own relative error, and its share of the float32 gradient's squared norm, summed over all draws.
~0.5 s per draw on one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "training"))
import test_fp8  # noqa: E402  (the test's seeds and bounds)
from conftest import fp8_vs_fp32  # noqa: E402  (the test's own comparison)
from gpu_common import table  # noqa: E402

from wanray import accel  # noqa: E402
from wanray.generation import EMBEDDED_MODEL_DIR  # noqa: E402
from wanray.training.config import apply_overrides  # noqa: E402
from wanray.training.model import build_training_model  # noqa: E402
from wanray.training.presets import embedded_lora_smoke  # noqa: E402

COLUMNS = ["seed", "timestep", "loss fp32", "loss rel diff", "grad rel err", "cosine"]


def build_pair(model_dir: Path):
    """Build the float32 reference and the FP8 training model of ``embedded_lora_smoke`` on the weights in
    ``model_dir``."""
    config = dataclasses.replace(embedded_lora_smoke(), model=str(model_dir))
    reference = build_training_model(config, torch.device("cpu"))
    accel._EMULATE_FP8 = True  # what the test's monkeypatch does: torchao's CPU emulation, no device check
    fp8 = build_training_model(apply_overrides(config, test_fp8.FP8), torch.device("cpu"))
    return reference, fp8


def group_of(name: str) -> tuple[str, str]:
    """Return the (layer kind, block) of a LoRA parameter: ``dit.blocks.3.cross_attn.k.lora_B.default.weight``
    gives (``cross_attn.k``, ``dit.3``)."""
    m = re.match(r"(dit|vace)\.(?:vace_)?blocks\.(\d+)\.(.+)\.lora_[AB]\.", name)
    return (m.group(3), f"{m.group(1)}.{m.group(2)}") if m else (name, "?")


def measure(reference, fp8, seeds, sq_err, sq_ref) -> list[dict]:
    """Return one row per seed, and add each group's squared error and squared float32 norm to sq_err and sq_ref.
    A draw at timestep 1000 is marked "left out": DiffSynth weighs the loss there by 0, so it has no gradient."""
    rows = []
    for seed in seeds:
        r = fp8_vs_fp32(reference, fp8, seed)
        for name, g_ref, g_fp8 in zip(reference.trainable, r["ref_grads"], r["fp8_grads"]):
            for axis, group in zip(("kind", "block"), group_of(name)):
                sq_err[axis, group] += float((g_fp8 - g_ref).pow(2).sum())
                sq_ref[axis, group] += float(g_ref.pow(2).sum())
        row = {"seed": seed, "timestep": round(r["timestep"]), "loss fp32": r["ref_loss"], "loss rel diff": r["loss"],
               "grad rel err": r["grad"], "cosine": r["cosine"],
               "note": "loss weight 0: left out" if np.isnan(r["grad"]) else "" if r["finite"] else "NOT FINITE"}
        rows.append(row)
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              file=sys.stderr)
    return rows


def fmt(rows: list[dict]) -> list[dict]:
    return [{k: f"{v:.5f}" if k == "cosine" else f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()}
            for r in rows]


def report_test(kept: list[dict], test_rows: list[dict]) -> None:
    """Print the test's seeds and bounds next to this measurement."""
    worst_grad = max(r["grad rel err"] for r in kept)
    worst_loss = max(r["loss rel diff"] for r in kept)
    worst_cos = min(r["cosine"] for r in kept)
    print(f"\nthe test (tests/unit/training/test_fp8.py), seeds {test_fp8.SEEDS}:")
    print(table(fmt(test_rows), COLUMNS))
    print(f"GRAD_BOUND = {test_fp8.GRAD_BOUND}: max of the draws {worst_grad:.4f}, "
          f"{test_fp8.GRAD_BOUND / worst_grad:.2f}x room")
    print(f"LOSS_BOUND = {test_fp8.LOSS_BOUND}: max of the draws {worst_loss:.4f}, "
          f"{test_fp8.LOSS_BOUND / worst_loss:.2f}x room")
    print(f"COSINE_MIN = {test_fp8.COSINE_MIN}: min of the draws {worst_cos:.5f}, "
          f"{(1 - test_fp8.COSINE_MIN) / (1 - worst_cos):.2f}x room in 1 - cosine")
    print(f"GRAD_FLOOR = {test_fp8.GRAD_FLOOR}: min of the draws {min(r['grad rel err'] for r in kept):.4f}")


def report_breakdown(sq_err, sq_ref) -> None:
    total_err = sum(v for (a, _), v in sq_err.items() if a == "kind")
    total_ref = sum(v for (a, _), v in sq_ref.items() if a == "kind")
    for axis in ("kind", "block"):
        groups = sorted((g for a, g in sq_err if a == axis), key=lambda g: -sq_err[axis, g])
        print()
        print(table([{axis: g, "share of sq. error": f"{sq_err[axis, g] / total_err:.3f}",
                      "own rel err": f"{(sq_err[axis, g] / sq_ref[axis, g]) ** 0.5:.3f}",
                      "share of fp32 sq. norm": f"{sq_ref[axis, g] / total_ref:.3f}"} for g in groups],
                    [axis, "share of sq. error", "own rel err", "share of fp32 sq. norm"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=EMBEDDED_MODEL_DIR,
                        help="model folder (default: the shipped embedded model)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared 2-core box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reference, fp8 = build_pair(args.model)
    sq_err, sq_ref = defaultdict(float), defaultdict(float)  # (axis, group): summed over the draws
    seeds = range(args.first_seed, args.first_seed + args.draws)
    rows = measure(reference, fp8, seeds, sq_err, sq_ref)
    print(table(fmt(rows), COLUMNS + ["note"]))

    kept = [r for r in rows if not r["note"].endswith("left out")]
    print(f"\n{args.draws} draws (seeds {seeds.start}..{seeds.stop - 1}), weights {args.model}; "
          f"{len(rows) - len(kept)} left out (loss weight 0), statistics over the other {len(kept)}:")
    stats = [{"": key, **{name: f"{f(np.array([r[key] for r in kept])):.4f}" for name, f in (
        ("min", np.min), ("median", np.median), ("p95", lambda v: np.percentile(v, 95)), ("max", np.max))}}
        for key in ("loss rel diff", "grad rel err", "cosine")]
    print(table(stats, ["", "min", "median", "p95", "max"]))

    print("\nby timestep (DiffSynth's shift-5 training schedule draws few low timesteps):")
    bands = [(0, 300), (300, 600), (600, 900), (900, 1001)]
    print(table([{"timestep": f"{lo}-{min(hi, 1000)}", "draws": len(g), "grad rel err median": f"{np.median(g):.4f}",
                  "max": f"{max(g):.4f}"} for lo, hi in bands
                 if (g := [r["grad rel err"] for r in kept if lo <= r["timestep"] < hi])],
                ["timestep", "draws", "grad rel err median", "max"]))

    by_seed = {r["seed"]: r for r in rows}
    missing = [s for s in test_fp8.SEEDS if s not in by_seed]
    by_seed.update({r["seed"]: r for r in measure(reference, fp8, missing, defaultdict(float), defaultdict(float))})
    report_test(kept, [by_seed[s] for s in test_fp8.SEEDS])
    report_breakdown(sq_err, sq_ref)


if __name__ == "__main__":
    main()

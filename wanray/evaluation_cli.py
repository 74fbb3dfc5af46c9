"""``wanray eval``: rank models on a dataset split (PSNR, SSIM, ratings) and write a leaderboard.

    wanray eval --dataset data/quick --split test --out outputs/eval [--ratings ratings.csv] \\
        --models base,lora=base+outputs/train/lora/export/lora.safetensors,full=outputs/train/full/export/model
    wanray eval --rescore outputs/eval --ratings ratings.csv     # recompute with new ratings only

A model is NAME=BASE[+LORA.safetensors[:ALPHA]]...; BASE is `base` (--base-model, default embedded),
a spec name or a model directory; a bare `base` or spec name names itself. Runs as a Ray job (one
actor per model, GPU when the cluster has one); see `python -m wanray.training.evaluate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wanray.config import DEFAULT_FPS, DEFAULT_FRAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", action="append", default=[], metavar="NAME=SPEC[,NAME=SPEC...]",
                   help="models to rank, comma-separated or repeated: NAME=BASE[+LORA.safetensors[:ALPHA]]..., "
                        "BASE = base | embedded | wan2.1-i2v-14b-720p | wan2.2-i2v-a14b | MODEL_DIR; "
                        "a bare 'base' is the --base-model")
    p.add_argument("--base-model", default="embedded",
                   help="what BASE 'base' stands for: a spec name or model directory (default embedded)")
    p.add_argument("--dataset", type=Path, default=None, help="dataset root holding metadata.csv")
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="which entries (default test)")
    p.add_argument("--out", type=Path, default=Path("outputs/eval"), help="output folder (default outputs/eval)")
    p.add_argument("--ratings", type=Path, default=None,
                   help="ratings CSV: rater,model,entry,dynamic,camera,quality,accuracy (1-5 each)")
    p.add_argument("--rescore", type=Path, default=None, metavar="DIR",
                   help="only rewrite the leaderboard of an earlier run in DIR (with --ratings); generates nothing")
    p.add_argument("--max-entries", type=int, default=None, help="only the first N entries of the split (smoke runs)")
    g = p.add_argument_group("generation (the same request for every model and entry)")
    g.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"4n+1 frames (default {DEFAULT_FRAMES})")
    g.add_argument("--height", type=int, default=None, help="multiple of 16 (default: the model's)")
    g.add_argument("--width", type=int, default=None, help="multiple of 16 (default: the model's)")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    g.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    g.add_argument("--fps", type=int, default=DEFAULT_FPS, help=f"fps of the written videos (default {DEFAULT_FPS})")
    r = p.add_argument_group("Ray")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when the cluster has GPUs or a model is larger than the embedded one "
                        "(then the job waits for GPU nodes), else CPU")
    r.add_argument("--gpus-per-model", type=float, default=None, help="GPUs per model actor (default 1 if any)")
    r.add_argument("--cpus-per-model", type=float, default=1.0, help="CPUs per model actor (default 1)")
    r.add_argument("--attention", default="auto", help="attention backend for every model (default auto)")
    r.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS, else a local Ray)")


def register(sub) -> None:
    p = sub.add_parser("eval", help="rank models on a dataset split: PSNR, SSIM, ratings -> leaderboard",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from wanray.training.evaluate import EvalConfig, parse_models, rescore, run_evaluation

    if args.rescore is not None:
        run = rescore(args.rescore, args.ratings)
    else:
        if not args.models or args.dataset is None:
            raise ValueError("give --models and --dataset (or --rescore DIR to only recompute a leaderboard)")
        run = run_evaluation(EvalConfig(
            models=parse_models(args.models, args.base_model), dataset=args.dataset, out=args.out, split=args.split,
            ratings=args.ratings, max_entries=args.max_entries, frames=args.frames, height=args.height,
            width=args.width, steps=args.steps, cfg=args.cfg, seed=args.seed, fps=args.fps, device=args.device,
            gpus_per_model=args.gpus_per_model, cpus_per_model=args.cpus_per_model, attention=args.attention,
            address=args.address,
        ))
    for m in run.table.models:
        print(f"{m.rank}. {m.model}: {m.total:.4f}{'' if m.complete else ' (partial)'}  {m.basis}")
    if run.table.missing:
        print(f"{len(run.table.missing)} (model, entry) pairs have no ratings: see {run.files['markdown']}")
    print(f"wrote {run.files['markdown'].resolve()}")
    return 0

"""``wanray train``: run a preset on Ray Train, plan its memory, list the presets.

    wanray train run --preset embedded_lora_smoke [--set optim.lr=2e-4 --set data.frames=9 ...]
    wanray train plan --preset wan21_i2v_720p_lora --gpu-mem 80 [--set strategy.checkpoint_offload=true]
    wanray train presets [--show NAME]

``run`` connects to the cluster named by RAY_ADDRESS (or starts a local Ray); as a job:
``ray job submit -- python -m wanray.training.train --preset NAME``.
"""

from __future__ import annotations

import argparse


def _add_preset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", required=True, help="a preset name (see `wanray train presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. optim.lr=2e-4, data.frames=33, scaling.num_workers=2, "
                        "lora=none (full fine-tune); repeat for several")


def load_config(preset: str, overrides: list[str]):
    from wanray.training.config import apply_overrides
    from wanray.training.presets import get_preset

    return apply_overrides(get_preset(preset), overrides)


def register(sub) -> None:
    train = sub.add_parser("train", help="fine-tune a Wan DiT (LoRA or full) on Ray Train", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = train.add_subparsers(dest="train_command", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="train (or resume) a preset on Ray Train")
    _add_preset_args(run)
    run.set_defaults(func=run_train)

    plan = actions.add_parser("plan", help="peak GPU memory per worker and the most 4n+1 frames that fit")
    _add_preset_args(plan)
    plan.add_argument("--gpu-mem", type=float, default=80, help="GPU size in GB as sold (default 80: H100 80GB)")
    plan.set_defaults(func=run_plan)

    presets = actions.add_parser("presets", help="list the presets (or show one's full config)")
    presets.add_argument("--show", default=None, metavar="NAME", help="print this preset's config as JSON")
    presets.set_defaults(func=run_presets)


def run_train(args: argparse.Namespace) -> int:
    from wanray.training.trainer import export_path, run

    config = load_config(args.preset, args.overrides)
    run(config)
    print(f"trained {config.name}: {export_path(config)}")
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from wanray.training.planner import Setup, estimate, max_frames, usable_gib

    config = load_config(args.preset, args.overrides)
    setup = Setup.from_config(config)
    est = estimate(setup)
    usable = usable_gib(args.gpu_mem)
    print(f"{config.name}: {setup.spec.name}, {config.method}, {setup.height}x{setup.width}, {setup.frames} frames "
          f"({setup.tokens:,} tokens), {setup.workers} worker(s), "
          f"{'DeepSpeed ZeRO-' + str(setup.zero_stage) if setup.engine == 'deepspeed' else 'DDP'}"
          f"{', optimizer offload' if setup.offload_optimizer else ''}{', parameter offload' if setup.offload_params else ''}"
          f", checkpointing {'with CPU offload' if setup.checkpoint_offload else 'on' if setup.checkpointing else 'off'}")
    print(est.table())
    verdict = "fits" if est.total <= usable else "does NOT fit"
    print(f"card: {args.gpu_mem:g} GB ({usable:.1f} GiB usable): {verdict}")
    best = max_frames(setup, args.gpu_mem)
    if best is None:
        print("largest 4n+1 frame count that fits: none (even 1 frame does not fit; offload or more workers)")
    else:
        print(f"largest 4n+1 frame count that fits: {best} ({estimate(replace(setup, frames=best)).total:.1f} GiB)")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from wanray.training.presets import PRESETS, get_preset

    if args.show:
        print(get_preset(args.show).to_json())
        return 0
    for name, build in PRESETS.items():
        config = build()
        d = config.data
        print(f"{name:<34} {config.model:<22} {config.method:<5} {d.height}x{d.width}x{d.frames:<4} "
              f"{(build.__doc__ or '').strip().splitlines()[0]}")
    return 0

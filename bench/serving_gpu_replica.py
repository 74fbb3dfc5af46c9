"""Per-step time of a 2-GPU generator replica (xDiT USP sequence parallel) against a 1-GPU replica, at full
Wan2.1-I2V-14B size with random weights, 720x1280, 77 frames. Runs on a GPU host (>= 2 GPUs, Ray installed):

    python bench/serving_gpu_replica.py [--gpus 1,2] [--steps 3] [--frames 77] [--size 720x1280]

Each replica is what serving reserves: one STRICT_PACK placement group of N GPU bundles, one Ray actor per
GPU (rank), an NCCL group between them. A step is one denoising step with classifier-free guidance (two DiT
forwards). Rows with N > 1 need the sequence-parallel engine, ``wanray.usp`` (the lead engineer's; this
script calls ``USP_HOOK`` on each rank's DiT); without it those rows print "n/a" and the 1-GPU baseline is
still measured.
"""

from __future__ import annotations

import argparse
import importlib
import time

USP_HOOK = "wanray.usp:parallelize_dit"  # (dit, *, sequence_parallel, rank, world_size) -> dit


def usp_hook():
    module, _, name = USP_HOOK.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


class Rank:
    """One GPU of a replica: a random-weight 14B DiT and one denoising step's inputs."""

    def __init__(self, rank: int, world: int, master: str, frames: int, height: int, width: int):
        import torch
        import torch.distributed as dist
        from diffsynth.models.wan_video_dit import precompute_freqs_cis_3d

        from wanray.components import build_dit
        from wanray.specs import wan21_i2v_14b_720p

        self.rank, self.world = rank, world
        if world > 1:
            dist.init_process_group("nccl", init_method=f"tcp://{master}", rank=rank, world_size=world)
        arch = wan21_i2v_14b_720p().dit
        dit = build_dit(arch, empty=True).to(torch.bfloat16).to_empty(device="cuda")
        gen = torch.Generator(device="cuda").manual_seed(0)  # same weights on every rank
        with torch.no_grad():
            for name, p in dit.named_parameters():
                p.fill_(1.0) if ("norm" in name and p.dim() == 1) else p.normal_(0.0, 0.02, generator=gen)
        dit.freqs = precompute_freqs_cis_3d(arch.head_dim)
        if world > 1:
            dit = usp_hook()(dit, sequence_parallel=world, rank=rank, world_size=world)
        self.dit = dit.eval()
        t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
        kw = dict(device="cuda", dtype=torch.bfloat16)
        self.inputs = dict(latents=torch.randn(1, 16, t, h, w, **kw), timestep=torch.tensor([500.0], device="cuda"),
                           context=torch.randn(1, 512, 4096, **kw), clip_feature=torch.randn(1, 257, 1280, **kw),
                           y=torch.randn(1, 20, t, h, w, **kw))
        self.uncond = torch.randn(1, 512, 4096, **kw)

    def step_seconds(self, steps: int) -> float:
        import torch
        from diffsynth.pipelines.wan_video import model_fn_wan_video

        def step():
            with torch.no_grad():
                model_fn_wan_video(self.dit, **self.inputs)
                model_fn_wan_video(self.dit, **{**self.inputs, "context": self.uncond})

        step()  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        return (time.perf_counter() - started) / steps


def replica_step_seconds(gpus: int, args) -> float | None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from wanray.raycluster.local import free_port

    if gpus > 1 and usp_hook() is None:
        return None
    pg = placement_group([{"CPU": 1, "GPU": 1}] * gpus, strategy="STRICT_PACK")
    ray.get(pg.ready())
    master = f"127.0.0.1:{free_port()}"
    height, width = (int(x) for x in args.size.split("x"))
    RankActor = ray.remote(num_gpus=1, num_cpus=1)(Rank)
    try:
        ranks = [RankActor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=i)).remote(i, gpus, master, args.frames, height, width)
            for i in range(gpus)]
        return max(ray.get([r.step_seconds.remote(args.steps) for r in ranks]))
    finally:
        remove_placement_group(pg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", default="1,2", help="GPUs per replica to measure, comma-separated")
    parser.add_argument("--steps", type=int, default=3, help="timed denoising steps (after one warm-up)")
    parser.add_argument("--frames", type=int, default=77)
    parser.add_argument("--size", default="720x1280", help="HEIGHTxWIDTH")
    args = parser.parse_args()
    import ray

    ray.init()
    rows = [(g, replica_step_seconds(g, args)) for g in (int(x) for x in args.gpus.split(","))]
    base = rows[0][1]
    print(f"\nWan2.1-I2V-14B (random weights, bf16), {args.size} x {args.frames} frames, one step = 2 DiT forwards")
    print(f"{'GPUs/replica':>12} | {'s/step':>7} | {'speed-up':>8}")
    for gpus, seconds in rows:
        if seconds is None:
            print(f"{gpus:>12} | {'n/a':>7} | needs {USP_HOOK}")
        else:
            print(f"{gpus:>12} | {seconds:>7.2f} | {base / seconds:>8.2f}")


if __name__ == "__main__":
    main()

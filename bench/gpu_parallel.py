"""Wan2.1-I2V-14B over 1-4 GPUs of one host: Ulysses sequence parallel, CFG parallel, VAE tiles spread.

One launch per layout (torchrun starts one process per GPU), each appending a row to a JSON lines file:

    torchrun --nproc-per-node 1 bench/gpu_parallel.py --ulysses 1 --cfg 1 --rows /tmp/rows.jsonl
    torchrun --nproc-per-node 2 bench/gpu_parallel.py --ulysses 2 --cfg 1 --rows /tmp/rows.jsonl
    torchrun --nproc-per-node 4 bench/gpu_parallel.py --ulysses 2 --cfg 2 --rows /tmp/rows.jsonl
    python bench/gpu_parallel.py --report /tmp/rows.jsonl      # the scaling table + bench/results JSON

The first launch (normally 1 GPU, eager) saves its DiT output; later launches compare theirs to it (same random weights
and inputs, seeded on the GPU). A denoising step with CFG is two DiT passes (or one merged pass split
over the two CFG groups). Clip times are extrapolated: steps x step + VAE encode + VAE decode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import card_name, randomize_, save, table, timed  # noqa: E402
from gpu_dit import dit_inputs  # noqa: E402

from wanray import accel, components  # noqa: E402
from wanray.attention import install_attention  # noqa: E402
from wanray.parallel import ParallelConfig, apply_parallel, init_parallel  # noqa: E402
from wanray.specs import embedded, wan21_i2v_14b_720p  # noqa: E402


def run(args) -> None:
    parallel = ParallelConfig(ulysses_degree=args.ulysses, cfg_degree=args.cfg)
    world = int(os.environ.get("WORLD_SIZE", 1))
    tiny = args.tiny
    device = torch.device("cpu") if tiny else torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    dtype = torch.float32 if tiny else torch.bfloat16
    spec = embedded() if tiny else wan21_i2v_14b_720p()
    if world > 1:
        init_parallel(parallel, device)
    rank = torch.distributed.get_rank() if world > 1 else 0
    attention = install_attention(args.attention, device)
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    pipe = WanVideoPipeline(device=str(device), torch_dtype=dtype)
    pipe.dit = randomize_(components.build_dit(spec.dit, empty=True), device, dtype).eval().requires_grad_(False)
    accel.apply_fast_dit_kernels(pipe.dit)
    if args.fp8:  # as generation orders them: float8 linears, then the USP processors, then compile
        accel.apply_fp8_compute(pipe.dit)
    if world > 1:
        apply_parallel(pipe, parallel)
    if args.compile:
        accel.compile_dit_blocks(pipe)
    inputs = dit_inputs(spec, args.frames, args.height, args.width, device, dtype)
    nega = {**inputs, "context": torch.roll(inputs["context"], 1, dims=1)}
    use_usp = parallel.ulysses_degree > 1

    def cfg_step():
        with torch.no_grad():
            if parallel.cfg_degree == 2:
                merged = {**inputs, "context": torch.cat([inputs["context"], nega["context"]]),
                          "y": torch.cat([inputs["y"]] * 2), "clip_feature": torch.cat([inputs["clip_feature"]] * 2)}
                out = pipe.model_fn(dit=pipe.dit, **merged, use_unified_sequence_parallel=use_usp, cfg_merge=True)
                return out[:1], out[1:]
            posi = pipe.model_fn(dit=pipe.dit, **inputs, use_unified_sequence_parallel=use_usp)
            neg = pipe.model_fn(dit=pipe.dit, **nega, use_unified_sequence_parallel=use_usp)
            return posi, neg

    def plain_step():  # no CFG (distilled 4-step samplers): one pass, sequence parallel only
        with torch.no_grad():
            return pipe.model_fn(dit=pipe.dit, **inputs, use_unified_sequence_parallel=use_usp)

    started = time.perf_counter()
    posi, neg = cfg_step()  # first call: compiles when --compile
    first_s = time.perf_counter() - started
    step = timed(cfg_step, repeats=args.repeats, warmup=0)
    row = {"gpus": world, "ulysses": parallel.ulysses_degree, "cfg": parallel.cfg_degree,
           "compile": args.compile, "fp8": args.fp8, "attention": attention, "cfg_step_s": round(step["median_s"], 3),
           "first_cfg_step_s": round(first_s, 1)}
    if parallel.cfg_degree == 1:
        row["plain_step_s"] = round(timed(plain_step, repeats=args.repeats, warmup=0)["median_s"], 3)
    # numerical equality with the 1-GPU reference
    ref_path = Path(args.reference)
    if rank == 0:
        pair = torch.stack([posi.float().cpu(), neg.float().cpu()])
        if not ref_path.exists():  # the first launch is the reference of the later ones
            torch.save(pair, ref_path)
        else:
            ref = torch.load(ref_path, weights_only=True)
            row["rel_err_vs_ref"] = f"{((pair - ref).norm() / ref.norm()).item():.1e}"
    del pipe.dit
    torch.cuda.empty_cache() if not tiny else None
    # VAE: tiles spread over all ranks of this launch
    if args.vae:
        from wanray.vae_tiling import device_resident_tiling

        vae = components.build_vae(spec.vae, empty=True)
        vae.model = randomize_(vae.model, device, dtype, std=0.05)
        group = torch.distributed.group.WORLD if world > 1 else None
        device_resident_tiling(vae, group)
        video = torch.rand(3, args.frames, args.height, args.width, device=device, dtype=dtype) * 2 - 1
        latents = torch.randn(1, 16, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8, device=device,
                              dtype=dtype)
        from wanray.vae_tiling import tiles_for_ranks

        size, stride = ((tuple(args.tile), tuple(args.tile_stride)) if args.tile
                        else tiles_for_ranks(args.height // 8, args.width // 8, world))  # the product's default
        with torch.no_grad():
            enc = timed(lambda: vae.encode([video], device=device, tiled=True, tile_size=size, tile_stride=stride),
                        repeats=1, warmup=1)
            dec = timed(lambda: vae.decode(latents, device=device, tiled=True, tile_size=size, tile_stride=stride),
                        repeats=1, warmup=1)
        row.update(vae_encode_s=round(enc["median_s"], 2), vae_decode_s=round(dec["median_s"], 2),
                   tile=f"{size}/{stride}")
    if rank == 0:
        with open(args.rows, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def report(rows_path: str, name: str) -> None:
    rows = [json.loads(line) for line in Path(rows_path).read_text().splitlines() if line.strip()]
    # speed-ups against 1 GPU eager when the run has it, else against its first launch (the reference)
    base = next((r for r in rows if r["gpus"] == 1 and not r.get("compile") and not r.get("fp8")), rows[0])
    print(f"speed-up baseline: {base['gpus']} GPU(s), Ulysses {base['ulysses']}, CFG {base['cfg']}, "
          f"compile {base.get('compile', False)}, fp8 {base.get('fp8', False)}")
    for r in rows:
        same_gpus = next((v for v in rows if v["gpus"] == r["gpus"] and "vae_decode_s" in v), None)
        r["speedup"] = round(base["cfg_step_s"] / r["cfg_step_s"], 2)
        vae = r if "vae_encode_s" in r else same_gpus  # VAE timed once per GPU count
        vae_s = (vae["vae_encode_s"] + vae["vae_decode_s"]) if vae else 0.0
        r["clip_50step_cfg_s"] = round(50 * r["cfg_step_s"] + vae_s, 1)
        if "plain_step_s" in r:
            r["clip_4step_s"] = round(4 * r["plain_step_s"] + vae_s, 1)
    print(table(rows, ["gpus", "ulysses", "cfg", "compile", "fp8", "attention", "cfg_step_s", "speedup", "plain_step_s",
                       "rel_err_vs_ref",
                       "vae_encode_s", "vae_decode_s", "clip_50step_cfg_s", "clip_4step_s"]))
    print("\nsaved", save(name, {"rows": rows, "note": "clip times = steps x step + VAE encode + decode"}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ulysses", type=int, default=1)
    p.add_argument("--cfg", type=int, default=1)
    p.add_argument("--attention", default="auto")
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks (generation's --compile)")
    p.add_argument("--fp8", action="store_true", help="FP8 linears, torchao per-row (generation's --fp8-compute)")
    p.add_argument("--vae", action="store_true", help="also time VAE encode/decode with tiles spread over the GPUs")
    p.add_argument("--tile", type=int, nargs=2, default=None,
                   help="VAE tile (latent units); default: one per GPU, as generation does (DiffSynth's: 30 52)")
    p.add_argument("--tile-stride", type=int, nargs=2, default=(15, 26))
    p.add_argument("--rows", default="/tmp/wanray_parallel_rows.jsonl")
    p.add_argument("--reference", default="/tmp/wanray_parallel_ref.pt")
    p.add_argument("--report", default=None, help="print the table of a rows file and save it")
    p.add_argument("--name", default="gpu_parallel", help="results file stem for --report (bench/results/NAME--CARD.json)")
    p.add_argument("--tiny", action="store_true", help="embedded spec on CPU with gloo (checks the script)")
    args = p.parse_args()
    if args.report:
        return report(args.report, args.name)
    if args.tiny:
        args.frames, args.height, args.width = 9, 64, 64
    started = time.perf_counter()
    run(args)
    print(f"launch took {time.perf_counter() - started:.0f} s on {card_name()}")


if __name__ == "__main__":
    main()

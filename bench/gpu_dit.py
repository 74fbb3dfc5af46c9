"""Wan2.1-I2V-14B on one GPU: attention backends, one DiT forward, VAE encode/decode — ours vs DiffSynth's.

    python bench/gpu_dit.py                       # full size (1280x720x77 = 72,000 tokens), random weights, bf16
    python bench/gpu_dit.py --sections attention  # one part only (attention, dit, vae)
    python bench/gpu_dit.py --tiny                # embedded sizes on the CPU: checks the script itself

Prints tables of times and ratios against DiffSynth's defaults measured in the same run, and writes
bench/results/gpu_dit--<card>.json (and $OUT/ when run through the device tool).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # bench/ helpers, not the repo root
from gpu_common import card_name, peak_gib, randomize_, save, table, timed  # noqa: E402

from wanray import accel, components  # noqa: E402
from wanray.attention import BACKENDS, install_attention, restore_diffsynth_attention  # noqa: E402
from wanray.specs import embedded, wan21_i2v_14b_720p  # noqa: E402

CONTEXT_TOKENS = 512 + 257  # umT5 text + CLIP image tokens


def dit_flops(spec, tokens: int) -> float:
    d, f, L, c = spec.dit.dim, spec.dit.ffn_dim, spec.dit.num_layers, CONTEXT_TOKENS
    per_layer = tokens * (12 * d * d + 4 * d * f) + 4 * tokens * tokens * d + 4 * tokens * c * d + 4 * c * d * d
    return L * per_layer


def attention_flops(tokens: int, dim: int) -> float:
    return 4 * tokens * tokens * dim


def bench_attention(spec, tokens, device, dtype, repeats):
    heads, dim = spec.dit.num_heads, spec.dit.dim
    q, k, v = (torch.randn(1, tokens, dim, device=device, dtype=dtype) for _ in range(3))
    small = [t[:, : min(tokens, 4096)].float().contiguous() for t in (q, k, v)]
    ref = BACKENDS["sdpa-math"].build()(*small, heads).double()
    rows = []
    for name, backend in BACKENDS.items():
        if name == "sdpa-math" or not backend.available(device):
            continue
        fn = backend.build()
        try:
            t = timed(lambda: fn(q, k, v, heads), repeats=repeats)
            check = fn(*(s.to(dtype) for s in small), heads).double()
        except Exception as e:  # a kernel that refuses this shape/dtype is reported, not fatal
            rows.append({"backend": name, "error": f"{type(e).__name__}: {str(e)[:80]}"})
            continue
        err = ((check - ref).norm() / ref.norm()).item()
        tflops = attention_flops(tokens, dim) / t["median_s"] / 1e12
        rows.append({"backend": name, "ms": round(t["median_s"] * 1e3, 2), "TFLOP/s": round(tflops, 1),
                     "rel_err_vs_fp32": f"{err:.1e}"})
    return rows


def dit_inputs(spec, frames, height, width, device, dtype):
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    g = torch.Generator(device=device).manual_seed(1)
    rand = lambda *s: torch.randn(*s, generator=g, device=device, dtype=dtype)  # noqa: E731
    inputs = {
        "latents": rand(1, 16, t, h, w),
        "timestep": torch.tensor([500.0], device=device, dtype=dtype),
        "context": rand(1, spec.text_encoder.text_len, spec.dit.text_dim),
        "y": rand(1, spec.dit.in_dim - 16, t, h, w),
    }
    if spec.uses_clip:
        inputs["clip_feature"] = rand(1, 257, 1280)
    return inputs


def bench_dit(spec, frames, height, width, device, dtype, repeats, best_attention, compile_blocks, fp8=False,
              fp8_attention=False, keep_rows=()):
    from diffsynth.pipelines.wan_video import model_fn_wan_video

    dit = randomize_(components.build_dit(spec.dit, empty=True), device, dtype).eval().requires_grad_(False)
    inputs = dit_inputs(spec, frames, height, width, device, dtype)
    tokens = inputs["latents"].shape[2] * (height // 16) * (width // 16)
    flops = dit_flops(spec, tokens)

    def forward():
        with torch.no_grad():
            return model_fn_wan_video(dit=dit, **inputs)

    # (label, attention, compiled: False | True | "fp8" = compiled with FP8 linears); the baseline always runs
    variants = [("diffsynth (its own attention, float64 RoPE)", None, False),
                (f"ours: {best_attention} + float32 RoPE + fused RMSNorm", best_attention, False)]
    if compile_blocks:
        variants.append(("ours + torch.compile(blocks)", best_attention, True))
    if fp8_attention:
        variants.append(("ours + compile + FP8 attention (cudnn-fp8)", "cudnn-fp8", True))
    if fp8:  # FP8 linears are applied in place, so these rows come last
        variants.append(("ours + compile + FP8 linears (torchao)", best_attention, "fp8"))
    if fp8 and fp8_attention:
        variants.append(("ours + compile + FP8 linears + FP8 attention", "cudnn-fp8", "fp8"))
    if keep_rows:
        variants = variants[:1] + [v for v in variants[1:] if any(v[0].startswith(k) for k in keep_rows)]
    rows, outputs = [], {}
    fp8_applied = False
    for label, attention, compiled in variants:
        if attention is None:
            restore_diffsynth_attention()
            accel.restore_diffsynth_kernels(dit)
        else:
            install_attention(attention, device)
            accel.apply_fast_dit_kernels(dit)
        if compiled == "fp8" and not fp8_applied:  # the product's --fp8-compute: per-row float8 linears
            accel.apply_fp8_compute(dit)
            fp8_applied = True
        if compiled:
            for block in dit.blocks:
                block.compile(dynamic=False)
        torch.cuda.reset_peak_memory_stats() if device.type == "cuda" else None
        import time as _t

        start = _t.perf_counter()
        first = forward()
        first_s = _t.perf_counter() - start
        t = timed(forward, repeats=repeats, warmup=0)
        outputs[label] = first.float()
        rows.append({"variant": label, "s": round(t["median_s"], 3), "first_call_s": round(first_s, 1),
                     "TFLOP/s": round(flops / t["median_s"] / 1e12, 1), "peak_GiB": round(peak_gib(), 1)})
    base = rows[0]["s"]
    ref = outputs[variants[0][0]]
    for row, (label, _, _) in zip(rows, variants):
        row["speedup"] = round(base / row["s"], 2)
        row["rel_err_vs_diffsynth"] = f"{((outputs[label] - ref).norm() / ref.norm()).item():.1e}"
    return rows, {"tokens": tokens, "pflop": round(flops / 1e15, 2)}


def bench_vae(spec, frames, height, width, device, dtype, repeats):
    vae = components.build_vae(spec.vae, empty=True)
    vae.model = randomize_(vae.model, device, dtype, std=0.05)
    video = torch.randn(3, frames, height, width, device=device, dtype=dtype).clamp(-1, 1)
    latents = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device=device, dtype=dtype)
    rows = []
    for label, tiled in (("tiled 30x52 / 15x26 (DiffSynth default)", True), ("untiled", False)):
        for op in ("encode", "decode"):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            fn = (lambda: vae.encode([video], device=device, tiled=tiled)) if op == "encode" else (
                lambda: vae.decode(latents, device=device, tiled=tiled))
            try:
                with torch.no_grad():
                    t = timed(fn, repeats=repeats, warmup=1)
                rows.append({"vae": f"{op} {label}", "s": round(t["median_s"], 2), "peak_GiB": round(peak_gib(), 1)})
            except torch.OutOfMemoryError:
                rows.append({"vae": f"{op} {label}", "s": "OOM"})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="embedded spec, 64x64x9, on CPU")
    p.add_argument("--sections", default="attention,dit,vae")
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd blocks")
    p.add_argument("--fp8", action="store_true", help="also time FP8 linears (torchao), compiled")
    p.add_argument("--fp8-attention", action="store_true", help="also time cuDNN FP8 attention (cudnn-fp8), compiled")
    p.add_argument("--rows", default="", help="';'-separated starts of our row names to keep (DiffSynth's always runs)")
    args = p.parse_args()
    if args.tiny:
        spec, device, dtype = embedded(), torch.device("cpu"), torch.float32
        args.frames, args.height, args.width = 9, 64, 64
    else:
        spec, device, dtype = wan21_i2v_14b_720p(), torch.device("cuda"), torch.bfloat16
    sections = set(args.sections.split(","))
    tokens = ((args.frames - 1) // 4 + 1) * (args.height // 16) * (args.width // 16)
    result = {"spec": spec.name, "frames": args.frames, "height": args.height, "width": args.width, "tokens": tokens}
    print(f"card: {card_name()}  spec: {spec.name}  {args.width}x{args.height}x{args.frames} = {tokens} tokens")

    best = "sdpa"
    if "attention" in sections:
        rows = bench_attention(spec, tokens, device, dtype, args.repeats + 1)
        print("\nattention, one layer (" f"{spec.dit.num_heads} heads x {spec.dit.head_dim})")
        print(table(rows, ["backend", "ms", "TFLOP/s", "rel_err_vs_fp32", "error"]))
        timed_rows = [r for r in rows if "ms" in r and not BACKENDS[r["backend"]].quantized]  # exact kernels
        best = min(timed_rows, key=lambda r: r["ms"])["backend"] if timed_rows else "sdpa"
        result["attention"] = rows
        result["attention_best"] = best
    if "dit" in sections:
        rows, info = bench_dit(spec, args.frames, args.height, args.width, device, dtype, args.repeats, best, args.compile, args.fp8,
                               args.fp8_attention, [r for r in args.rows.split(";") if r])
        print(f"\nDiT forward ({info['pflop']} PFLOP)")
        print(table(rows, ["variant", "s", "speedup", "TFLOP/s", "first_call_s", "peak_GiB", "rel_err_vs_diffsynth"]))
        result["dit"] = rows
    if "vae" in sections:
        rows = bench_vae(spec, args.frames, args.height, args.width, device, dtype, args.repeats)
        print("\nVAE")
        print(table(rows, ["vae", "s", "peak_GiB"]))
        result["vae"] = rows
    if not args.tiny:
        print("\nsaved", save("gpu_dit", result))


if __name__ == "__main__":
    main()

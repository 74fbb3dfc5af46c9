"""Shared by bench/train_step.py and bench/train_memory.py: a random-weight 14B DiT on the GPU and
DiT inputs at a given shape, so the benchmarks need no model files."""

from __future__ import annotations

import gc
import time

import torch


def random_dit(arch, device="cuda", dtype=torch.bfloat16, seed=0):
    """DiffSynth's WanModel at ``arch`` with random N(0, 0.02) weights, built directly on the GPU in ``dtype``."""
    from diffsynth.models.wan_video_dit import precompute_freqs_cis_3d

    from wanray.components import build_dit

    dit = build_dit(arch, empty=True).to(dtype)  # meta device: no host memory, no init
    dit = dit.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if "norm" in name and p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    dit.freqs = precompute_freqs_cis_3d(arch.head_dim)
    return dit.eval().requires_grad_(False)


def random_inputs(arch, frames, height, width, device="cuda", dtype=torch.bfloat16, text_len=512, seed=1):
    """DiT inputs of one sample: latents x0, umT5 context, CLIP features (Wan2.1), the I2V ``y``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    t = (frames - 1) // 4 + 1
    h, w = height // 8, width // 8
    inputs = {
        "input_latents": torch.randn(1, 16, t, h, w, generator=gen, device=device, dtype=dtype),
        "context": torch.randn(1, text_len, arch.text_dim, generator=gen, device=device, dtype=dtype),
        "y": torch.randn(1, arch.in_dim - 16, t, h, w, generator=gen, device=device, dtype=dtype),
    }
    if arch.has_image_input:
        inputs["clip_feature"] = torch.randn(1, 257, 1280, generator=gen, device=device, dtype=dtype)
    return inputs


def timed(fn, steps, warmup):
    """Mean seconds of ``fn()`` over ``steps`` calls after ``warmup`` calls; peak GiB allocated/reserved."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    return seconds, torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30


def free():
    gc.collect()
    torch.cuda.empty_cache()

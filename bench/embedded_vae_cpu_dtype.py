"""The embedded VAE's round trip on this CPU in float32 and in bfloat16: seconds and PSNR (is bf16 worth taking?).

    .venv/bin/python bench/embedded_vae_cpu_dtype.py [--entries 2]

The demo spends ~90% of its CPU time in the VAE (three encodes ~18 s, one decode ~12 s, the DiT and the rest ~3 s
on a 2-core AMD EPYC), so a wider VAE is affordable only if the VAE gets cheaper per channel. CPUs with AVX512-BF16
or AMX run bf16 convolutions faster; others may run them slower, so this measures rather than assumes. Entries of
seed 1234 (the targets'), 128x128, 77 frames, each encoded and decoded whole, after one untimed warm-up round trip
per dtype.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402

from wanray.generation import resolve_model  # noqa: E402
from wanray.loading import load_model_dir  # noqa: E402
from wanray.metrics import psnr_per_frame  # noqa: E402
from wanray.training.embedded import _render  # noqa: E402


def round_trip(model, scale, video: np.ndarray, dtype: torch.dtype) -> tuple[float, float, np.ndarray]:
    """Encode and decode ``video`` [T, H, W, 3] uint8 in ``dtype``: (encode s, decode s, uint8 [T, H, W, 3])."""
    x = torch.from_numpy(video).to(dtype).div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # [1, 3, T, H, W]
    with torch.no_grad():
        started = time.perf_counter()
        z = model.encode(x, scale)  # [1, 16, 1 + (T-1)/4, H/8, W/8]
        encoded = time.perf_counter()
        recon = model.decode(z, scale)[0].float().clamp(-1, 1)  # [3, T, H, W]
        decoded = time.perf_counter()
    return encoded - started, decoded - encoded, ((recon + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=2)
    args = p.parse_args()
    vae = load_model_dir(*resolve_model("embedded")).vae
    videos = [_render(1234, i, 128, 77) for i in range(args.entries)]  # each [77, 128, 128, 3] uint8
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        model, scale = vae.model.to(dtype).eval(), [s.to(dtype) for s in vae.scale]
        round_trip(model, scale, videos[0][:5], dtype)  # warm-up: oneDNN picks its kernels
        runs = [round_trip(model, scale, v, dtype) for v in videos]
        psnr = np.concatenate([psnr_per_frame(r[2], v) for r, v in zip(runs, videos)])
        rows.append({"dtype": str(dtype).removeprefix("torch."), "encode s": round(np.mean([r[0] for r in runs]), 2),
                     "decode s": round(np.mean([r[1] for r in runs]), 2), "mean dB": round(float(psnr.mean()), 2),
                     "min dB": round(float(psnr.min()), 2)})
    for row in rows:
        row["speed-up"] = round((rows[0]["encode s"] + rows[0]["decode s"]) / (row["encode s"] + row["decode s"]), 2)
    print(f"embedded VAE, {torch.get_num_threads()} CPU threads, {args.entries} clips of 77x128x128")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()

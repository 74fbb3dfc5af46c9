"""Speed of wanray.metrics.compare_videos against a per-frame scikit-image loop (the baseline), same inputs.

    .venv/bin/python bench/eval_metrics.py [--sizes 128x128x77,480x832x17,720x1280x9] [--repeat 2]

Prints one row per size: seconds for scikit-image (PSNR + grey SSIM + RGB SSIM, frame by frame) and for
compare_videos (which also computes flicker), their ratio, and the largest difference of the numbers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def skimage_metrics(gen: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from wanray.metrics import to_grey

    psnr, ssim, ssim_rgb = [], [], []
    for g, r in zip(gen, ref):
        psnr.append(peak_signal_noise_ratio(r, g, data_range=255))
        ssim.append(structural_similarity(to_grey(r[None])[0], to_grey(g[None])[0], data_range=255))
        ssim_rgb.append(structural_similarity(r, g, data_range=255, channel_axis=-1))
    return np.array(psnr), np.array(ssim), np.array(ssim_rgb)


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128x128x77,480x832x17,720x1280x9", help="HxWxT,... to time")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = parser.parse_args()

    import torch

    from wanray.metrics import compare_videos

    rng = np.random.default_rng(0)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'H x W x T':>16} | {'scikit-image s':>14} | {'wanray s':>9} | {'speed-up':>8} | {'max |diff|':>10}")
    print("-" * 70)
    for size in args.sizes.split(","):
        h, w, t = (int(v) for v in size.split("x"))
        ref = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
        gen = np.clip(ref.astype(np.int16) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
        base_s, (psnr, ssim, ssim_rgb) = best_of(lambda: skimage_metrics(gen, ref), args.repeat)
        ours_s, m = best_of(lambda: compare_videos(gen, ref), args.repeat)
        diff = max(np.abs(m.psnr - psnr).max(), np.abs(m.ssim - ssim).max(), np.abs(m.ssim_rgb - ssim_rgb).max())
        print(f"{size:>16} | {base_s:14.3f} | {ours_s:9.3f} | {base_s / ours_s:7.2f}x | {diff:10.2e}")


if __name__ == "__main__":
    main()

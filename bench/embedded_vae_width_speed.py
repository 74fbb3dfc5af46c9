"""What a wider embedded VAE would cost the demo on this CPU: seconds of its VAE work per width (random weights).

    .venv/bin/python bench/embedded_vae_width_speed.py [--dims 32,40,48] [--repeats 2]

The VAE is the first limit of the embedded model's quality (bench/results/embedded_targets_run20b-2core-cpu.md), and
~90% of the demo's CPU time. A wider whole VAE is the next lever; this says which widths the demo's 30 s budget
allows before any training is spent on one. Per width (``VAEArch(dim=D)``, the shipped decoder's (2,2,4,4) widths,
in the dtype and convolution form generation picks on this CPU): what ``wanray demo`` asks of the VAE at 128x128 and
77 frames, two encodes (the first frame with zeros, the pose video; VACE's all-zero clip is memoized) and one decode,
the minimum of ``--repeats`` after a warm-up. Speed does not depend on weight values, so the weights are random.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402

from wanray import accel  # noqa: E402
from wanray.components import build_vae  # noqa: E402
from wanray.generation import resolve_vae_dtype  # noqa: E402
from wanray.specs import VAEArch  # noqa: E402

SHIPPED_DIM, DECODER_MULT, FRAMES, SIZE = 32, (2, 2, 4, 4), 77, 128


def demo_vae_seconds(dim: int, dtype: torch.dtype, repeats: int) -> tuple[float, int]:
    """Seconds of the demo's VAE work at width ``dim``, and the VAE's parameter count."""
    vae = build_vae(VAEArch(dim=dim, decoder_dim_mult=DECODER_MULT))
    accel.speed_up_cpu_conv3d(vae)
    model = vae.model.to(dtype)
    x = torch.rand(1, 3, FRAMES, SIZE, SIZE, dtype=dtype) * 2 - 1  # [B, 3, T, H, W] in [-1, 1]
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first warms the kernels up
            started = time.perf_counter()
            model.encode(x, vae.scale)
            z = model.encode(x, vae.scale)  # [1, 16, 20, 16, 16]
            model.decode(z, vae.scale)
            times.append(time.perf_counter() - started)
    return min(times[1:]), sum(p.numel() for p in model.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", default="32,40,48", help="VAE widths to time (default 32,40,48; the shipped one is 32)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per width (default 2, after a warm-up)")
    args = p.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    if SHIPPED_DIM not in dims:
        dims.insert(0, SHIPPED_DIM)  # the baseline, measured in the same run
    torch.manual_seed(0)
    dtype = resolve_vae_dtype("auto", torch.device("cpu"), torch.float32)  # as a CPU generation picks it
    form = "batched conv2d" if accel.conv2d_beats_conv3d_on_this_cpu() else "conv3d"
    measured = {d: demo_vae_seconds(d, dtype, args.repeats) for d in dims}
    base = measured[SHIPPED_DIM][0]
    rows = [{"dim": d, "params_M": f"{n / 1e6:.1f}", "bf16_MB": f"{2 * n / 1e6:.0f}", "vae_s": f"{s:.2f}",
             "vs_shipped": f"{s / base:.2f}x", "extra_s": f"{s - base:+.1f}"} for d, (s, n) in measured.items()]
    print(f"demo's VAE work (2 encodes + 1 decode, {FRAMES}x{SIZE}x{SIZE}) on this CPU: {dtype}, {form}")
    print(table(rows, ["dim", "params_M", "bf16_MB", "vae_s", "vs_shipped", "extra_s"]))


if __name__ == "__main__":
    main()

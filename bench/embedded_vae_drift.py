"""Does the embedded VAE's causal decoder drift along a clip? Reconstruction L1 per 8 frames of whole clips.

    .venv/bin/python bench/embedded_vae_drift.py --data data/synth [--model wanray/embedded_model] [--clips 4]

Each clip (128x128, up to 77 frames of the synthetic set) is encoded and decoded whole, untiled, as generation
does at the model's size. A decoder trained on short clips reconstructs the first frames well and then washes
out (L1 0.03 over frames 0-7 rising to 0.19-0.37 over frames 40-47 before the decoder-only stage). The table
prints the mean L1 (pixels in [-1, 1]) per 8-frame window, and the last window over the first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402

from wanray.datasets.schema import read_manifest, resolve_media  # noqa: E402
from wanray.generation import EMBEDDED_MODEL_DIR  # noqa: E402
from wanray.loading import load_model_dir  # noqa: E402
from wanray.specs import embedded  # noqa: E402
from wanray.training.embedded import _decode  # noqa: E402

WINDOW = 8


def reconstruct(vae, video: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``video`` [T, H, W, 3] uint8 (T = 4n+1) encoded and decoded whole, untiled, as generation does: the clip and
    its reconstruction, each [3, T, H, W] in [-1, 1]."""
    x = torch.from_numpy(video).float().div(127.5).sub(1).permute(3, 0, 1, 2).to(device)  # [3, T, H, W]
    with torch.no_grad():
        z = vae.encode([x], device=device)  # [1, 16, 1 + (T-1)/4, H/8, W/8]
        recon = vae.decode(z, device=device)[0].clamp(-1, 1).float()  # [3, T, H, W]
    return x, recon


def window_l1(vae, video: np.ndarray, device: torch.device) -> list[float]:
    """Mean |decode(encode(x)) - x| per WINDOW frames; ``video`` [T, H, W, 3] uint8, T = 4n+1."""
    x, recon = reconstruct(vae, video, device)
    err = (recon - x).abs().mean(dim=(0, 2, 3)).cpu().numpy()  # [T]
    return [float(err[i : i + WINDOW].mean()) for i in range(0, len(err), WINDOW)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a synthetic set (wanray datasets synth), 128x128")
    p.add_argument("--model", type=Path, default=EMBEDDED_MODEL_DIR, help="model directory (default: the shipped one)")
    p.add_argument("--clips", type=int, default=4, help="how many of the set's videos (default 4)")
    p.add_argument("--frames", type=int, default=77, help="frames per clip, 4n+1 (default 77)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args()
    if (args.frames - 1) % 4:
        p.error(f"--frames must be 4n+1, got {args.frames}")
    device = torch.device(args.device)
    vae = load_model_dir(args.model, embedded()).vae.to(device).float().eval()
    rows = []
    for entry in read_manifest(args.data)[: args.clips]:
        video = _decode(resolve_media(args.data, entry.video, "video"), 128)[: args.frames]
        video = video[: (len(video) - 1) // 4 * 4 + 1]  # 4n+1
        l1 = window_l1(vae, video, device)
        rows.append({"clip": entry.id, "frames": len(video), **{f"f{i * WINDOW}": round(v, 3) for i, v in enumerate(l1)},
                     "last/first": round(l1[-1] / l1[0], 1)})
    print(f"model {args.model}, L1 per {WINDOW} frames (pixels in [-1, 1]), device {device}")
    print(table(rows, list(rows[0])))
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Is the embedded VAE's round trip capped by its size or by its training? PSNR before and after overfitting.

    python bench/embedded_vae_capacity.py --model wanray/embedded_model --json OUT/before.json
    python -m wanray.training.embedded --stage vae --entries 8 --data-seed 11 --vae-from wanray/embedded_model \\
        --out /tmp/overfit --device cuda --batch 8 --crop 0 --clip-frames 13 --lr 2e-4 --cosine --warmup 20 \\
        --steps 700 --max-seconds 330
    python bench/embedded_vae_capacity.py --model /tmp/overfit/model_vae --json OUT/after.json
    python bench/embedded_vae_capacity.py --checkpoint /tmp/overfit/vae_stage/checkpoint   # a GPU host's checkpoint

A VAE trained on only ``--clips`` clips, many times over, shows how well its width and latent (16 channels at 8x8
spatial, 4x temporal compression) *can* code such clips. If even those stay far under issue 21's 30 dB, the
architecture is the limit and more steps of the same training cannot reach it; if they reach it while unseen clips
do not, the limit is the training (data, steps, loss). Measured on the first ``--clips`` entries of the training
seed (the clips overfitted) and of seed 1234 (unseen: the targets benchmark's entries), 128x128, 77 frames, each
encoded and decoded whole, untiled, as generation does; PSNR per frame of the uint8 round trip.
``--images``: frames 0, 20, 40 and 60 of each clip, each encoded and decoded alone as a one-frame clip: the
spatial code by itself, and 19x cheaper (the CPU's stand-in for a GPU measurement).
``--checkpoint``: the VAE of a VAE stage's checkpoint instead (``--model`` then gives only the spec), for a GPU host
whose checkout holds no model weights (``scripts/gpu-host-vae-capacity.sh``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from embedded_vae_drift import reconstruct  # noqa: E402
from gpu_common import table  # noqa: E402

from wanray.components import build_vae  # noqa: E402
from wanray.generation import EMBEDDED_MODEL_DIR  # noqa: E402
from wanray.loading import load_model_dir  # noqa: E402
from wanray.metrics import psnr_per_frame  # noqa: E402
from wanray.specs import spec_for_dir  # noqa: E402
from wanray.training.checkpoint import load_checkpoint  # noqa: E402
from wanray.training.embedded import _render  # noqa: E402

UNSEEN_SEED = 1234  # bench/embedded_targets.py's entries
SIZE, FRAMES = 128, 77  # the demo's clip, as the targets measure it
IMAGE_FRAMES = [0, 20, 40, 60]  # --images


def round_trip(vae, video: np.ndarray, device: torch.device) -> np.ndarray:
    """``video`` [T, H, W, 3] uint8 (T = 4n+1) encoded and decoded whole: uint8 [T, H, W, 3]."""
    _, recon = reconstruct(vae, video, device)  # [3, T, H, W] in [-1, 1]
    return ((recon + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=EMBEDDED_MODEL_DIR, help="model folder (default: the shipped one)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a VAE stage's checkpoint folder: its VAE, built from --model's spec")
    p.add_argument("--clips", type=int, default=8, help="entries per set (default 8)")
    p.add_argument("--train-seed", type=int, default=11, help="the seed of the overfitted clips (default 11)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", action="store_true", help=f"frames {IMAGE_FRAMES}, each round-tripped alone")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.checkpoint:
        vae = build_vae(spec_for_dir(args.model).vae)
        vae.model.load_state_dict(load_checkpoint(args.checkpoint))
    else:
        vae = load_model_dir(args.model, spec_for_dir(args.model)).vae
    vae = vae.to(device).float().eval()
    rows = []
    for name, seed in (("overfitted", args.train_seed), ("unseen", UNSEEN_SEED)):
        for i in range(args.clips):
            video = _render(seed, i, SIZE, FRAMES)  # [T, 128, 128, 3] uint8
            if args.images:
                video = video[IMAGE_FRAMES]  # [4, H, W, 3]
                recon = np.concatenate([round_trip(vae, frame[None], device) for frame in video])  # [4, H, W, 3]
            else:
                recon = round_trip(vae, video, device)
            psnr = psnr_per_frame(recon, video)  # [T]
            row = {"set": name, "entry": f"s{seed}-{i:05d}", "mean dB": round(float(psnr.mean()), 2),
                   "min dB": round(float(psnr.min()), 2), "frame 0 dB": round(float(psnr[0]), 2)}
            if not args.images:
                row["frames 1-12 dB"] = round(float(psnr[1:13].mean()), 2)
            rows.append(row)
    summary = [{"set": name, **{k: round(float(np.mean([r[k] for r in rows if r["set"] == name])), 2)
                                for k in list(rows[0])[2:]}}
               for name in ("overfitted", "unseen")]
    what = f"frames {IMAGE_FRAMES} alone" if args.images else f"{FRAMES} frames"
    print(f"model {args.checkpoint or args.model}, {SIZE}x{SIZE}, {what}, device {device}")
    print(table(rows, list(rows[0])))
    print(table(summary, list(summary[0])))
    if args.json:
        record = {"model": str(args.checkpoint or args.model), "rows": rows, "summary": summary}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

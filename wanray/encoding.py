"""Frozen-encoder work for training: one sample in, the DiT's conditioning tensors out.

DiffSynth's own training runs the pipeline's units in training mode to turn (video, prompt, image,
...) into model inputs; we do exactly that, once, so that the latent cache (``wanray.datasets``) and the
training loop's pixel path produce the same tensors. Keys of the result (each with batch dim 1):

- ``input_latents`` [1, 16, T', H/8, W/8]: VAE latents of the target video (T' = (T-1)/4 + 1)
- ``context`` [1, text_len, text_dim]: umT5 prompt embedding
- ``y`` [1, 20, T', H/8, W/8]: first-frame mask (4) + VAE latents of [image, zeros...] (I2V)
- ``clip_feature`` [1, 257, 1280]: CLIP features of the first-frame image (Wan2.1 I2V)
- ``vace_context`` [1, 96, T', H/8, W/8]: VACE video latents + mask (when a VACE video is given)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from wanray.vae_tiling import DIFFSYNTH_TILES

ENCODED_KEYS = ("input_latents", "context", "y", "clip_feature", "vace_context")


@dataclass(kw_only=True)
class TrainingSample:
    """One training entry, decoded: all frames fitted to the same height x width, 4n+1 of them."""

    video: list[Image.Image]
    prompt: str
    input_image: Image.Image | None = None
    vace_video: list[Image.Image] | None = None
    vace_video_mask: list[Image.Image] | None = None
    vace_reference_image: Image.Image | None = None
    control_video: list[Image.Image] | None = None

    def __post_init__(self) -> None:
        if len(self.video) % 4 != 1:
            raise ValueError(f"a training video needs 4n+1 frames, got {len(self.video)}")
        size = self.video[0].size
        for name in ("vace_video", "vace_video_mask", "control_video"):
            frames = getattr(self, name)
            if frames is not None and (len(frames) != len(self.video) or frames[0].size != size):
                raise ValueError(
                    f"{name} has {len(frames)} frames of {frames[0].size}; the target has {len(self.video)} of {size}"
                )


def usable_inputs(pipe, sample: TrainingSample) -> TrainingSample:
    """Only the conditioning the pipeline's DiT takes. DiffSynth's Fun-Control unit rewrites ``y`` with any
    control video, even for a DiT without control channels (same shape, wrong content), and VACE inputs
    mean nothing without a VACE branch."""
    from dataclasses import replace

    from wanray.inputs import FUN_CONTROL_IN_DIM

    drop = {}
    if pipe.dit.in_dim != FUN_CONTROL_IN_DIM:
        drop["control_video"] = None
    if pipe.vace is None:
        drop.update(vace_video=None, vace_video_mask=None, vace_reference_image=None)
    return replace(sample, **drop) if drop else sample


@torch.no_grad()
def encode_sample(pipe, sample: TrainingSample, tiled: bool = False) -> dict[str, torch.Tensor]:
    """Run the pipeline's encoder units (VAE, umT5, CLIP) in training mode on one sample."""
    sample = usable_inputs(pipe, sample)
    scheduler_was_training = getattr(pipe.scheduler, "training", False)
    pipe.scheduler.set_timesteps(1000, training=True)
    try:
        width, height = sample.video[0].size
        shared = {
            "input_video": sample.video,
            "input_image": sample.input_image,
            "vace_video": sample.vace_video,
            "vace_video_mask": sample.vace_video_mask,
            "vace_reference_image": sample.vace_reference_image,
            "control_video": sample.control_video,
            "height": height,
            "width": width,
            "num_frames": len(sample.video),
            "cfg_scale": 1,
            "cfg_merge": False,
            "tiled": tiled,
            "tile_size": DIFFSYNTH_TILES[0],
            "tile_stride": DIFFSYNTH_TILES[1],
            "rand_device": "cpu",
            "vace_scale": 1.0,
        }
        posi, nega = {"prompt": sample.prompt}, {}
        for unit in pipe.units:
            shared, posi, nega = pipe.unit_runner(unit, pipe, shared, posi, nega)
    finally:
        if not scheduler_was_training:
            pipe.scheduler.training = False
    merged = {**shared, **posi}
    return {k: merged[k].detach() for k in ENCODED_KEYS if isinstance(merged.get(k), torch.Tensor)}

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

import threading
from contextlib import contextmanager
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


@contextmanager
def _training_scheduler(pipe):
    """The pipeline's scheduler in training mode (DiffSynth's units read it) for the duration of the block."""
    was_training = getattr(pipe.scheduler, "training", False)
    pipe.scheduler.set_timesteps(1000, training=True)
    try:
        yield
    finally:
        if not was_training:
            pipe.scheduler.training = False


@torch.no_grad()
def encode_sample(pipe, sample: TrainingSample, tiled: bool = False) -> dict[str, torch.Tensor]:
    """Run the pipeline's encoder units (VAE, umT5, CLIP) in training mode on one sample."""
    with _training_scheduler(pipe):
        return _run_units(pipe, sample, tiled)


@torch.no_grad()
def encode_samples(pipe, samples: list[TrainingSample], tiled: bool = False) -> list[dict[str, torch.Tensor]]:
    """``encode_sample`` for several samples, their VAE encodes batched: each sample runs the pipeline's units in a
    thread of its own, and ``BatchedVAEEncode`` turns the threads' concurrent ``vae.encode`` calls into one call of
    the VAE per round. A small VAE is launch-bound (the causal encoder runs chunk after chunk of small kernels), so
    a batch costs about what one clip does. Tiled encoding (large frames) stays one clip at a time."""
    if len(samples) <= 1 or tiled:
        return [encode_sample(pipe, s, tiled) for s in samples]
    from concurrent.futures import ThreadPoolExecutor

    batcher = BatchedVAEEncode(pipe.vae, len(samples))
    with _training_scheduler(pipe), batcher.installed(), ThreadPoolExecutor(len(samples)) as pool:
        futures = [pool.submit(batcher.run, _run_units, pipe, s, tiled) for s in samples]
        return [f.result() for f in futures]


class BatchedVAEEncode:
    """Stands in for ``WanVideoVAE.encode`` while ``workers`` threads each encode one sample: a call waits until
    every thread still running is waiting too, then one of them encodes all their clips in one batched call of
    the VAE model (clips grouped by shape) and hands each caller its own latents."""

    def __init__(self, vae, workers: int):
        self.vae = vae
        self.active = workers  # threads that have not finished their sample
        self.pending: list[dict] = []  # one per waiting call: videos, device, result
        self.cond = threading.Condition()

    @contextmanager
    def installed(self):
        before = vars(self.vae).get("encode")  # a wrapper of our own (accel.memoize_zero_clip_encodes), or none
        self.vae.encode = self.encode  # an instance attribute shadows the class's method
        try:
            yield self
        finally:
            if before is None:
                del self.vae.encode
            else:
                self.vae.encode = before

    def run(self, fn, *args):
        """``fn(*args)`` in a worker thread; the thread stops counting as active when it returns or raises."""
        try:
            return fn(*args)
        finally:
            with self.cond:
                self.active -= 1
                self._flush_if_all_waiting()

    def encode(self, videos, device, tiled=False, **tiles):
        if tiled:
            raise RuntimeError("BatchedVAEEncode batches untiled encodes only")
        call = {"videos": [v.to("cpu") for v in videos], "device": device}  # each [3, T, H, W], as DiffSynth's
        with self.cond:
            self.pending.append(call)
            self._flush_if_all_waiting()
            while "result" not in call:
                self.cond.wait()
        if isinstance(call["result"], BaseException):
            raise call["result"]
        return call["result"]

    def _flush_if_all_waiting(self) -> None:
        if not self.pending or len(self.pending) < self.active:
            return
        calls, self.pending = self.pending, []
        try:
            for call, latents in zip(calls, self._encode_all(calls)):
                call["result"] = latents
        except BaseException as e:  # every waiting caller raises it
            for call in calls:
                call["result"] = e
        self.cond.notify_all()

    @torch.no_grad()
    def _encode_all(self, calls: list[dict]) -> list[torch.Tensor]:
        clips = [(i, j, v) for i, call in enumerate(calls) for j, v in enumerate(call["videos"])]
        out: dict[tuple[int, int], torch.Tensor] = {}
        by_shape: dict[tuple, list] = {}
        for i, j, v in clips:
            by_shape.setdefault((tuple(v.shape), v.dtype, str(calls[i]["device"])), []).append((i, j, v))
        for (_, _, device), group in by_shape.items():
            # VACE's inactive clip (the video where no mask is) is all zeros for a pose video: one of a sample's four
            # clips, the same for every sample of a shape, so it is encoded once per batch
            zeros = [not v.any() for _, _, v in group]
            coded = [v for (_, _, v), zero in zip(group, zeros) if not zero]  # in order; then one zero clip, last
            coded += [group[zeros.index(True)][2]] if any(zeros) else []
            z = self.vae.model.encode(torch.stack(coded).to(device), self.vae.scale)  # [B, 16, T', H/8, W/8]
            nonzero = iter(z)
            for (i, j, _), zero in zip(group, zeros):
                out[i, j] = z[-1] if zero else next(nonzero)
        return [torch.stack([out[i, j] for j in range(len(call["videos"]))]) for i, call in enumerate(calls)]


@torch.no_grad()  # also in encode_samples' threads: grad mode is per thread
def _run_units(pipe, sample: TrainingSample, tiled: bool) -> dict[str, torch.Tensor]:
    """The pipeline's units on one sample (the scheduler already in training mode)."""
    sample = usable_inputs(pipe, sample)
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
    merged = {**shared, **posi}
    return {k: merged[k].detach() for k in ENCODED_KEYS if isinstance(merged.get(k), torch.Tensor)}

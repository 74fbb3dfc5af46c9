"""Training inputs: the Ray Datasets handed to ``TorchTrainer`` and, on each worker, rows -> DiT inputs.

Two sources, decided once in the driver:

- ``cache``: the latent cache of ``wanray.datasets.cache`` when it matches the model and the shape:
  rows already hold the frozen encoders' outputs (no VAE/umT5/CLIP work while training).
- ``pixels``: decoded rows from ``wanray.datasets.ingest``; each worker runs ``encode_sample`` (the
  pipeline's own encoder units) on its rows.

The row format belongs to ``wanray.datasets``; this module only calls its helpers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from wanray.training.config import TrainConfig

log = logging.getLogger(__name__)

SOURCE_CACHE = "cache"
SOURCE_PIXELS = "pixels"


@dataclass
class TrainingData:
    datasets: dict  # name -> ray.data.Dataset ("train", optionally "validation")
    rows: int
    source: str
    reason: str


def _shape(config: TrainConfig) -> tuple[int, int, int, float]:
    """(frames, height, width, fps), as ``wanray.datasets.cache`` takes a shape."""
    return (config.data.frames, config.data.height, config.data.width, config.data.fps)


def _media(config: TrainConfig) -> tuple[str, ...]:
    """The media columns ingest must decode (video and input_image always are)."""
    wanted = {"vace_video": ("vace_video", "vace_video_mask"), "vace_reference_image": ("vace_reference_image",),
              "control_video": ("control_video",)}
    return ("video", "input_image") + tuple(c for x in config.data.extra_inputs for c in wanted.get(x, ()))


def _read_split(config: TrainConfig, split: str):
    from wanray.datasets import ingest

    d = config.data
    return ingest.read_split(d.dataset, split, height=d.height, width=d.width, frames=d.frames, fps=d.fps,
                             media=_media(config))


def _split_size(config: TrainConfig, split: str) -> int:
    """Rows ``_read_split`` yields, from the manifest: decoding never drops a row (it raises), and ``count()`` on
    the lazy dataset would decode every video once in the driver just to count them."""
    from wanray.datasets import ingest

    return len(ingest.entry_table(ingest.IngestConfig(root=Path(config.data.dataset), split=split,
                                                      media=_media(config))))


def choose_source(config: TrainConfig) -> tuple[str, str]:
    """("cache" | "pixels", why) for this config."""
    if config.data.latent_cache is None:
        return SOURCE_PIXELS, "no latent cache configured"
    from wanray.datasets import cache

    cache_dir = Path(config.data.latent_cache).expanduser()
    if not cache_dir.exists():
        return SOURCE_PIXELS, f"latent cache {cache_dir} does not exist"
    mismatch = cache.cache_mismatch(cache_dir, config.model, _shape(config), split=config.data.split,
                                    dataset=config.data.dataset)
    if mismatch:
        return SOURCE_PIXELS, mismatch
    return SOURCE_CACHE, f"latent cache {cache_dir} matches {config.model} at {_shape(config)}"


def build_training_data(config: TrainConfig) -> TrainingData:
    """The train (and validation) datasets, lazily read; counts the training rows."""
    from wanray.datasets.ingest import IngestError

    source, reason = choose_source(config)
    log.info("training inputs: %s (%s)", source, reason)
    if config.data.in_memory and source != SOURCE_CACHE:
        raise ValueError(f"data.in_memory needs a latent cache that matches the run, but {reason}: build it with "
                         "`wanray datasets cache` for this model and shape, or set data.in_memory=false")
    if source == SOURCE_CACHE:
        from wanray.datasets import cache

        train = cache.read_latent_cache(Path(config.data.latent_cache).expanduser(), config.data.split,
                                        fingerprint=cache.fingerprint(config.model, _shape(config)))
        rows = train.count()  # parquet metadata (and an Arrow filter for a split of an ``all`` cache)
    else:
        train = _read_split(config, config.data.split)
        rows = _split_size(config, config.data.split)
    if config.data.limit is not None:
        train, rows = train.limit(config.data.limit), min(rows, config.data.limit)
    datasets = {"train": train}
    if config.validation.every_steps:
        try:
            datasets["validation"] = _read_split(config, config.data.validation_split).limit(config.validation.samples)
        except IngestError as e:
            log.warning("validation off: %s", e)
    return TrainingData(datasets=datasets, rows=rows, source=source, reason=reason)


def row_to_sample(row: dict, extra_inputs: tuple[str, ...]):
    """A decoded row -> ``TrainingSample`` with only the configured extra inputs."""
    from wanray.datasets import ingest

    sample = ingest.row_to_sample(row)
    for name in ("input_image", "vace_video", "vace_reference_image", "control_video"):
        if name not in extra_inputs:
            setattr(sample, name, None)
            if name == "vace_video":
                sample.vace_video_mask = None
    return sample


def configured_tensors(tensors: dict[str, torch.Tensor], extra_inputs: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A cached row's tensors as the pixel path would encode them with only ``extra_inputs``: the cache encodes every
    input the model takes, so what comes from an input left out of the run is dropped (VACE's context without a
    VACE input; the first frame's ``y`` and CLIP features without ``input_image``, ``y`` kept for a control video)."""
    drop = set()
    if not {"vace_video", "vace_reference_image"} & set(extra_inputs):
        drop.add("vace_context")
    if "input_image" not in extra_inputs:
        drop.add("clip_feature")
        if "control_video" not in extra_inputs:
            drop.add("y")
    return {k: v for k, v in tensors.items() if k not in drop}


class RowEncoder:
    """Dataset rows -> the DiT's inputs for them as one batch on the device (``input_latents`` [B, 16, T', H/8,
    W/8], ``context``, ``y``, ...): each row's tensors (batch dim 1) stacked along the batch dim."""

    def __init__(self, pipe, source: str, extra_inputs: tuple[str, ...], device: torch.device, dtype: torch.dtype):
        self.pipe = pipe
        self.source = source
        self.extra_inputs = extra_inputs
        self.device = device
        self.dtype = dtype

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        each = [self._encode(row) for row in rows]
        return {k: torch.cat([t[k] for t in each]).to(self.device, self.dtype) for k in each[0]}

    def _encode(self, row: dict) -> dict[str, torch.Tensor]:
        if self.source == SOURCE_CACHE:
            from wanray.datasets import cache

            return configured_tensors(cache.row_to_tensors(row), self.extra_inputs)
        from wanray.encoding import encode_sample

        return encode_sample(self.pipe, row_to_sample(row, self.extra_inputs))


def pass_permutation(count: int, seed: int, pass_index: int) -> torch.Tensor:
    """The rows of one pass [count], in an order that depends only on (seed, pass), so a resumed run replays it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + pass_index)
    return torch.randperm(count, generator=generator)


class ResidentRows:
    """A worker's latent-cache rows, decoded once and kept on its device (``data.in_memory``): each pass is a
    seeded permutation of row indices, each micro-batch an index into the stacked tensors. No Ray Data pass
    (seconds of start-up each) and no safetensors decoding per step."""

    def __init__(self, shard, device: torch.device, dtype: torch.dtype, seed: int):
        from wanray.datasets import cache

        self.seed = seed
        each = [cache.row_to_tensors(row) for row in shard.iter_rows()]
        if not each:
            raise RuntimeError("this worker's shard of the latent cache is empty: fewer rows than workers?")
        self.count = len(each)
        self.tensors = {k: torch.cat([t[k] for t in each]).to(device, dtype) for k in each[0]}  # each [N, ...]
        self.nbytes = sum(t.numel() * t.element_size() for t in self.tensors.values())

    def pass_order(self, pass_index: int) -> list[int]:
        return pass_permutation(self.count, self.seed, pass_index).tolist()

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, device=next(iter(self.tensors.values())).device)
        return {k: v.index_select(0, index) for k, v in self.tensors.items()}  # [B, ...] each

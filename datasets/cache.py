"""The latent cache: the frozen encoders run once per entry, their outputs stored as Parquet.

    wanray datasets cache data/quick --out data/quick-cache [--model embedded|DIR] [--split train] \\
        [--height 128 --width 128 --frames 81 --fps 15] [--actors 1] [--gpus-per-actor 0]
    python -m wanray.datasets.cache data/quick --out data/quick-cache

A Ray Data job: ingest decodes the split (tasks), then an actor pool whose actors each load the
model once (``WanGenerator.load``) runs ``wanray.encoding.encode_sample`` on every row: VAE for the
target, first frame and VACE videos, umT5 for the prompt, CLIP for the image. The same code runs the
embedded model on CPUs and the 14B encoders on GPUs (``--gpus-per-actor 1``).

Layout: ``CACHE_DIR/<fingerprint>/<split>/*.parquet`` (columns ``id``, ``split``, ``prompt``,
``tensors``: a safetensors blob of ``encode_sample``'s dict, so dtypes and shapes come back exactly)
and ``CACHE_DIR/<fingerprint>/<split>.json``, written last: a cache without it is incomplete and
never matches. The fingerprint hashes the model's files (path, size, first and last MiB of each),
its spec, and height, width, frames and fps. The json keeps a digest of each entry's prompt and media files (path,
size, modification time): a cache matches a dataset only while every entry of the split is in it as it is now.

Training side:

    if cache_matches(cache_dir, "embedded", VideoShape(height=128, width=128, frames=81), dataset="data/quick"):
        ds = read_latent_cache(cache_dir, "train")             # rows: id, split, prompt, tensors
        ...  tensors = row_to_tensors(row)                     # {"input_latents": [1,16,T',h,w], ...}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from wanray.datasets.shape import VideoShape
from wanray.datasets.split import SPLITS, check_split

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the stored layout or the encoding changes
SAMPLE_BYTES = 1024 * 1024  # bytes hashed at each end of a model file
FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")


# -- fingerprints --


def as_shape(shape) -> VideoShape:
    """A VideoShape, or a tuple (frames, height, width[, fps]) as the training config gives it."""
    if isinstance(shape, VideoShape):
        return shape
    values = tuple(shape)
    if len(values) not in (3, 4):
        raise ValueError(f"shape must be a VideoShape or (frames, height, width[, fps]), got {shape!r}")
    frames, height, width = (int(v) for v in values[:3])
    return VideoShape(height=height, width=width, frames=frames, fps=float(values[3]) if len(values) == 4 else 15.0)


def model_identity(model: str, model_spec: str | None = None) -> dict:
    """What identifies a model's weights without reading them all: spec, and per file its size and end samples."""
    from wanray.generation import resolve_model

    root, spec = resolve_model(model, model_spec)
    files = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            digest.update(f.read(SAMPLE_BYTES))
            if size > 2 * SAMPLE_BYTES:
                f.seek(size - SAMPLE_BYTES)
                digest.update(f.read(SAMPLE_BYTES))
        files.append({"path": path.relative_to(root).as_posix(), "size": size, "sha256_ends": digest.hexdigest()})
    return {"spec": spec.to_dict(), "files": files}


def fingerprint(model: str, shape, model_spec: str | None = None) -> str:
    """16 hex digits naming (model files, height, width, frames, fps, cache format)."""
    key = {"format": CACHE_FORMAT, "model": model_identity(model, model_spec), "shape": as_shape(shape).as_dict()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _marker(cache_dir: Path, fp: str, split: str) -> Path:
    return Path(cache_dir) / fp / f"{split}.json"


def entry_digests(root: Path | str, entries: list[dict]) -> dict[str, str]:
    """Per entry id, 16 hex digits over its prompt and each media file's path (under ``root``), size and modification
    time: a cached row is stale once any of them changes."""
    from wanray.datasets.schema import MEDIA_COLUMNS

    root = Path(root).resolve()
    out = {}
    for entry in entries:
        digest = hashlib.sha256(entry["prompt"].encode())
        for column in MEDIA_COLUMNS:
            if entry.get(column):
                path = Path(entry[column])
                stat = path.stat()
                where = path.resolve().relative_to(root)
                digest.update(f"\0{column}\0{where}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        out[entry["id"]] = digest.hexdigest()[:16]
    return out


def _split_digests(dataset: Path | str, split: str, excluded: frozenset[str]) -> dict[str, str]:
    from wanray.datasets.ingest import IngestConfig, entry_table
    from wanray.datasets.schema import MEDIA_COLUMNS

    ingest = IngestConfig(root=Path(dataset), split=split, media=MEDIA_COLUMNS, exclude_ids=excluded)
    return entry_digests(dataset, entry_table(ingest))


def stale_entries(meta: dict, current: dict[str, str]) -> list[str]:
    """The ids of ``current`` (id -> digest) that a cache's marker does not hold as they are now (new or changed);
    ids the cache left out on purpose (a validation report's quarantine) are not counted."""
    cached, excluded = meta.get("entries", {}), set(meta.get("excluded", ()))
    return sorted(i for i, d in current.items() if i not in excluded and cached.get(i) != d)


def cache_mismatch(cache_dir: Path | str, model: str, shape, split: str = "train", model_spec: str | None = None, *,
                   dataset: Path | str) -> str | None:
    """None when ``cache_dir`` holds a complete cache of ``split`` (or of ``all``) for this model and shape that
    holds every entry of ``dataset``'s split as its files are now; else why not."""
    cache_dir = Path(cache_dir)
    fp = fingerprint(model, shape, model_spec)
    markers = [m for m in (_marker(cache_dir, fp, s) for s in (split, "all")) if m.is_file()]
    if not markers:
        return f"latent cache {cache_dir} holds no {split!r} cache for {model} at {as_shape(shape)}"
    for marker in markers:
        meta = json.loads(marker.read_text())
        # the rows a validation report quarantined stay out, as when the cache was made (they may fail the schema)
        stale = stale_entries(meta, _split_digests(dataset, split, frozenset(meta.get("excluded", ()))))
        if not stale:
            return None
    return f"latent cache {marker} is older than {dataset}: {_changed(stale)} (e.g. {', '.join(stale[:3])})"


def _changed(stale: list[str]) -> str:
    return f"{len(stale)} {'entry is' if len(stale) == 1 else 'entries are'} new or changed since it was made"


def cache_matches(cache_dir: Path | str, model: str, shape, split: str = "train", model_spec: str | None = None, *,
                  dataset: Path | str) -> bool:
    """True when ``cache_mismatch`` finds nothing: the cache is complete and current for this model and shape."""
    return cache_mismatch(cache_dir, model, shape, split, model_spec, dataset=dataset) is None


def complete_caches(cache_dir: Path | str) -> list[dict]:
    """The metadata of every complete cache under ``cache_dir`` (one per fingerprint and split)."""
    return [
        json.loads(p.read_text())
        for p in sorted(Path(cache_dir).glob("*/*.json"))
        if FINGERPRINT_RE.fullmatch(p.parent.name)
    ]


# -- reading --


def read_latent_cache(cache_dir: Path | str, split: str = "train", *, fingerprint: str | None = None):
    """A lazy ``ray.data.Dataset`` of cached rows (``id``, ``split``, ``prompt``, ``tensors``) of one split.

    ``fingerprint`` picks among several caches in one folder (see ``cache_matches``); a fingerprint may
    also be given in place of the split (then the split is ``train``). A cache of ``all`` serves
    ``train`` and ``test`` by filtering on the ``split`` column.
    """
    import ray
    from ray.data.expressions import col

    if fingerprint is None and FINGERPRINT_RE.fullmatch(split or "") and split not in SPLITS:
        fingerprint, split = split, "train"
    check_split(split)
    cache_dir = Path(cache_dir)
    found = [c for c in complete_caches(cache_dir) if fingerprint in (None, c["fingerprint"])]
    exact = [c for c in found if c["split"] == split]
    usable = exact or [c for c in found if c["split"] == "all"]
    if not usable:
        raise FileNotFoundError(
            f"{cache_dir} holds no complete {split!r} cache"
            f"{' with fingerprint ' + fingerprint if fingerprint else ''}; "
            f"make one with `wanray datasets cache DATASET --out {cache_dir} --split {split}`"
        )
    serving = {c["fingerprint"] for c in found if c["split"] in (split, "all")}  # an exact cache or an "all" one
    if len(serving) > 1:
        raise ValueError(
            f"{cache_dir} holds {split!r} caches for several models or shapes "
            f"({', '.join(sorted(serving))}); pass fingerprint=fingerprint(model, shape)"
        )
    chosen = usable[0]
    ds = ray.data.read_parquet(str(cache_dir / chosen["fingerprint"] / chosen["split"]))
    return ds if chosen["split"] == split else ds.filter(expr=col("split") == split)  # pushed down to Arrow


def row_to_tensors(row) -> dict:
    """A cached row -> the dict ``encode_sample`` returned for that entry (same dtypes, same shapes)."""
    from safetensors.torch import load

    return load(bytes(row["tensors"]))


# -- writing --


@dataclass(kw_only=True, frozen=True)
class CacheConfig:
    """One cache job.

    Attributes:
        root: the dataset; out: the cache folder (caches of other models/shapes/splits may share it).
        model / model_spec: whose encoders (``embedded``, a spec name or a model directory).
        split: ``train``, ``test`` or ``all``; shape: decoded size, frames (4n+1) and fps.
        device / dtype: as for generation (``auto``: CUDA and bfloat16 if present, else CPU float32).
        actors: encoder actors (each loads the model once); gpus_per_actor / cpus_per_actor: their resources.
        batch_size: entries an actor encodes together, their VAE encodes in one batched call
            (``wanray.encoding.encode_samples``): a small VAE is launch-bound, so a batch costs about one entry.
        tiled: tiled VAE encoding (large frames on small GPUs).
        overwrite: replace an existing complete cache of the same fingerprint and split.
    """

    root: Path
    out: Path
    model: str = "embedded"
    model_spec: str | None = None
    split: str = "train"
    shape: VideoShape = field(default_factory=VideoShape)
    device: str = "auto"
    dtype: str = "auto"
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int = 1
    tiled: bool = False
    overwrite: bool = False
    exclude_report: Path | None = None

    def __post_init__(self) -> None:
        check_split(self.split)
        if self.actors < 1 or self.batch_size < 1:
            raise ValueError(f"actors and batch_size must be at least 1, got {self.actors} and {self.batch_size}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise ValueError(
                f"gpus_per_actor must be >= 0 and cpus_per_actor > 0, got {self.gpus_per_actor}, {self.cpus_per_actor}"
            )


class EncodeRows:
    """Ray Data actor: loads the model's frozen encoders once, encodes each decoded row."""

    def __init__(self, model: str, model_spec: str | None, device: str, dtype: str, tiled: bool):
        from wanray.config import ModelConfig
        from wanray.generation import WanGenerator, resolve_device, resolve_dtype

        # Latents are training data: the VAE runs in the encoders' dtype, never generation's CPU choice
        # (vae_dtype auto times bf16 against float32 in each process), so every actor and run writes the same ones.
        vae_dtype = str(resolve_dtype(dtype, resolve_device(device))).removeprefix("torch.")
        self.generator = WanGenerator.load(ModelConfig(model=model, model_spec=model_spec, device=device, dtype=dtype,
                                                       vae_dtype=vae_dtype))
        free_denoisers(self.generator.pipe)
        self.tiled = tiled

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        from safetensors.torch import save

        from wanray.datasets.ingest import row_to_sample
        from wanray.datasets.split import split_of
        from wanray.encoding import encode_samples

        ids, blobs = [], []
        rows = [{k: v[i] for k, v in batch.items()} for i in range(len(batch["id"]))]
        samples = [row_to_sample(row) for row in rows]  # encode_samples keeps only what the model takes
        for row, tensors in zip(rows, encode_samples(self.generator.pipe, samples, tiled=self.tiled)):
            blobs.append(save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
            ids.append(str(row["id"]))
        return {
            "id": np.array(ids),
            "split": np.array([split_of(i) for i in ids]),
            "prompt": np.array([str(p) for p in batch["prompt"]]),
            "tensors": np.array(blobs, dtype=object),
        }


def free_denoisers(pipe) -> None:
    """Drop the DiT and VACE weights (encoding never runs them; 28 GB per 14B DiT). Their attributes stay."""
    for name in ("dit", "dit2", "vace", "vace2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.to("meta")


def build_cache(config: CacheConfig) -> Path:
    """Encode the split into ``out/<fingerprint>/<split>/`` and write ``<split>.json`` last. Returns the json path."""
    import ray

    from wanray.datasets.ingest import IngestConfig, build_dataset, entry_table, quarantined_ids
    from wanray.datasets.schema import MEDIA_COLUMNS

    fp = fingerprint(config.model, config.shape, config.model_spec)
    out = Path(config.out)
    final, marker = out / fp / config.split, _marker(out, fp, config.split)
    ingest = IngestConfig(
        root=Path(config.root),
        split=config.split,
        shape=config.shape,
        media=MEDIA_COLUMNS,
        exclude_ids=quarantined_ids(config.exclude_report) if config.exclude_report else frozenset(),
        batch_size=1,
    )
    entries = entry_table(ingest)
    digests = entry_digests(config.root, entries)
    if marker.exists() and not config.overwrite:
        stale = stale_entries(json.loads(marker.read_text()), digests)
        state = _changed(stale) if stale else "this cache is already complete"
        raise ValueError(f"{marker} exists: {state}; pass --overwrite to rebuild it")
    expected = sorted(digests)
    staging = out / fp / f".{config.split}.{uuid.uuid4().hex[:8]}.tmp"
    started = time.perf_counter()
    log.info(
        "cache: encoding %d %s entries of %s with %s (fingerprint %s) into %s",
        len(expected),
        config.split,
        config.root,
        config.model,
        fp,
        final,
    )
    ds = build_dataset(ingest).map_batches(
        EncodeRows,
        fn_constructor_kwargs={
            "model": config.model,
            "model_spec": config.model_spec,
            "device": config.device,
            "dtype": config.dtype,
            "tiled": config.tiled,
        },
        batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=config.actors),
        num_gpus=config.gpus_per_actor or None,
        num_cpus=config.cpus_per_actor,
    )
    try:
        ds.write_parquet(str(staging), min_rows_per_file=64, compression="zstd")
        written = sorted(ray.data.read_parquet(str(staging), columns=["id"]).to_pandas()["id"].tolist())
        if written != expected:
            missing, extra = sorted(set(expected) - set(written)), sorted(set(written) - set(expected))
            raise RuntimeError(
                f"cache: wrote {len(written)} rows for {len(expected)} entries "
                f"(missing {missing[:5]}, unexpected {extra[:5]}); nothing was published"
            )
        marker.unlink(missing_ok=True)  # the old cache is incomplete from here on
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    meta = {
        "fingerprint": fp,
        "format": CACHE_FORMAT,
        "split": config.split,
        "dataset": str(Path(config.root).resolve()),
        "model": config.model,
        "model_spec": config.model_spec,
        "shape": config.shape.as_dict(),
        "device": config.device,
        "dtype": config.dtype,
        "tiled": config.tiled,
        "count": len(written),
        "ids": written,
        "entries": digests,  # what each row was encoded from (``stale_entries``)
        "excluded": sorted(ingest.exclude_ids),
        "seconds": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    written_marker = marker.with_suffix(".json.tmp")
    written_marker.write_text(json.dumps(meta, indent=2) + "\n")
    written_marker.replace(marker)  # atomic: a marker is whole or absent, and absent means incomplete
    log.info(
        "cache: %d entries in %.1f s (%.2f s/entry) -> %s", len(written), seconds, seconds / max(1, len(written)), final
    )
    return marker


# -- command line (shared with `wanray datasets cache`) --


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="dataset folder (metadata.csv + media)")
    p.add_argument("--out", required=True, help="cache folder (several models, shapes and splits may share it)")
    p.add_argument("--model", default="embedded", help="embedded, a spec name or a model directory (default embedded)")
    p.add_argument("--model-spec", default=None, help="spec of --model DIR when it cannot be recognised from its files")
    p.add_argument(
        "--split", default="train", choices=("train", "test", "all"), help="which split to encode (default train)"
    )
    p.add_argument("--height", type=int, default=128, help="frame height, a multiple of 16 (default 128)")
    p.add_argument("--width", type=int, default=128, help="frame width, a multiple of 16 (default 128)")
    p.add_argument("--frames", type=int, default=81, help="frames per entry, 4n+1 (default 81)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate the frames are sampled at (default 15)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"], help="encoder dtype")
    p.add_argument("--actors", type=int, default=1, help="encoder actors, each loading the model once (default 1)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (1 for 14B encoders; default 0)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per actor (default 1)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="entries an actor encodes together, VAE calls batched (small VAEs: 8-16; default 1)")
    p.add_argument("--tiled", action="store_true", help="tiled VAE encoding (less GPU memory at 720p)")
    p.add_argument(
        "--exclude-report", default=None, help="a `wanray datasets validate --report` JSON: skip its quarantine"
    )
    p.add_argument("--overwrite", action="store_true", help="rebuild a cache that is already complete")
    p.add_argument("--address", default=None, help="Ray cluster to use (default: $RAY_ADDRESS, else a local one)")


def config_from_args(args: argparse.Namespace) -> CacheConfig:
    return CacheConfig(
        root=Path(args.root),
        out=Path(args.out),
        model=args.model,
        model_spec=args.model_spec,
        split=args.split,
        shape=VideoShape(height=args.height, width=args.width, frames=args.frames, fps=args.fps),
        device=args.device,
        dtype=args.dtype,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
        tiled=args.tiled,
        overwrite=args.overwrite,
        exclude_report=Path(args.exclude_report) if args.exclude_report else None,
    )


def run(args: argparse.Namespace) -> int:
    import ray

    config = config_from_args(args)
    if not ray.is_initialized():
        ray.init(address=args.address, log_to_driver=False, logging_level=logging.WARNING)
    marker = build_cache(config)
    meta = json.loads(marker.read_text())
    print(f"cached {meta['count']} {meta['split']} entries (fingerprint {meta['fingerprint']}) in {marker.parent}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from wanray.datasets.cli import module_main

    return module_main(sys.modules[__name__], argv, errors=(ValueError, FileNotFoundError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())

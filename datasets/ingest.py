"""Ray Data ingest: manifest -> decoded rows fitted to a job's shape, streamed with bounded memory.

    from wanray.datasets.ingest import read_split, row_to_sample
    ds = read_split("data/quick", "train", height=128, width=128, frames=81, fps=15)
    trainer = TorchTrainer(train_loop_per_worker, datasets={"train": ds}, ...)

    def train_loop_per_worker(config):
        for row in ray.train.get_dataset_shard("train").iter_rows():
            sample = row_to_sample(row)          # wanray.encoding.TrainingSample

The split is chosen on the manifest (a few KB) before anything is decoded; decoding runs lazily in
``map_batches`` tasks whose batch size keeps each batch under a memory budget, so 5,000 videos are
never held at once. Rows:

- ``id``, ``prompt``: strings
- ``video``: uint8 [T, H, W, 3]; ``input_image``: uint8 [H, W, 3]
- ``control_video``, ``vace_video``, ``vace_video_mask``: uint8 [T, H, W, 3]
- ``vace_reference_image``: uint8 [H, W, 3]

A medium a row does not have is ``None`` when no row of the split has it; when only some rows have
it, it is an empty array (zero frames), because Arrow cannot mix null and tensor blocks. Use
``media(row, column)`` or ``row_to_sample`` to read either as ``None``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from wanray.datasets.schema import (
    IMAGE_COLUMNS,
    MEDIA_COLUMNS,
    OPTIONAL_COLUMNS,
    ManifestRow,
    RowError,
    read_manifest,
    read_records,
    resolve_media,
)
from wanray.datasets.shape import VideoShape
from wanray.datasets.split import check_split, select_split

log = logging.getLogger(__name__)

BATCH_BYTES = 256 * 1024**2  # decoded bytes per map_batches batch (bounds each task's memory)


class IngestError(RuntimeError):
    """An entry could not be decoded for the job; names the entry, the file and the fix."""


@dataclass(kw_only=True, frozen=True)
class IngestConfig:
    """Which entries to decode and to what shape.

    Attributes:
        root: dataset folder (``metadata.csv`` + media).
        split: ``train``, ``test`` or ``all``.
        shape: output height, width, frames (4n+1) and fps.
        media: which media columns to decode (others come back as None); ``video`` and ``input_image``
            are always decoded.
        exclude_ids: ids to leave out (e.g. the quarantine of a validation report); counted in the log.
        batch_size: rows per decode task (default: as many as fit in ``BATCH_BYTES``).
    """

    root: Path
    split: str = "train"
    shape: VideoShape = field(default_factory=VideoShape)
    media: tuple[str, ...] = MEDIA_COLUMNS
    exclude_ids: frozenset[str] = frozenset()
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_split(self.split)
        unknown = [m for m in self.media if m not in MEDIA_COLUMNS]
        if unknown:
            raise ValueError(f"unknown media column(s) {', '.join(unknown)}; choose from {', '.join(MEDIA_COLUMNS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    @property
    def decoded(self) -> tuple[str, ...]:
        return tuple(c for c in MEDIA_COLUMNS if c in ("video", "input_image") or c in self.media)

    def row_bytes(self) -> int:
        s = self.shape
        frame = s.height * s.width * 3
        return sum(frame * (1 if c in IMAGE_COLUMNS else s.frames) for c in self.decoded)

    def auto_batch_size(self, rows: int) -> int:
        """Rows per decode task: under BATCH_BYTES, at most 16, and small enough to give 8+ tasks."""
        if self.batch_size:
            return self.batch_size
        return max(1, min(16, BATCH_BYTES // self.row_bytes(), -(-rows // 8)))


def quarantined_ids(report_path: Path | str) -> frozenset[str]:
    """The ids a ``wanray datasets validate --report`` JSON quarantined."""
    report = json.loads(Path(report_path).read_text())
    return frozenset(str(r["id"]) for r in report.get("quarantine", []) if r.get("id"))


def entry_table(config: IngestConfig) -> list[dict]:
    """The split's entries as plain dicts (id, prompt, absolute media paths or None), checked, not decoded."""
    manifest = read_manifest(config.root, config.exclude_ids)  # quarantined rows go before they are checked
    if config.exclude_ids:
        excluded = len(read_records(config.root)[1]) - len(manifest)
        log.info("ingest: leaving out %d manifest row%s listed as quarantined", excluded, "" if excluded == 1 else "s")
    return [_entry(config.root, row, config.decoded) for row in select_split(manifest, config.split)]


def _entry(root: Path, row: ManifestRow, decoded: tuple[str, ...]) -> dict:
    entry: dict = {"id": row.id, "prompt": row.prompt}
    for column in MEDIA_COLUMNS:
        value = getattr(row, column)
        if column not in decoded or not value:
            entry[column] = None
            continue
        try:
            entry[column] = str(resolve_media(root, value, column))
        except RowError as e:
            raise IngestError(f"entry {row.id!r} (row {row.line}): {e}; run `wanray datasets validate {root}`") from e
    return entry


def build_dataset(config: IngestConfig):
    """A lazy ``ray.data.Dataset`` of decoded rows (nothing is decoded until it is consumed)."""
    import ray

    table = entry_table(config)
    if not table:  # e.g. the test split of a very small set: an empty dataset, said out loud
        log.warning("ingest: split %r of %s has no entries", config.split, config.root)
        return ray.data.from_items([])
    # optional media present on some rows only: empty arrays on the others (see the module docstring)
    mixed = tuple(c for c in OPTIONAL_COLUMNS if 0 < sum(e[c] is not None for e in table) < len(table))
    batch_size = config.auto_batch_size(len(table))
    blocks = max(1, -(-len(table) // batch_size))
    log.info(
        "ingest: %d %s entries of %s, decoded to %dx%d x %d frames at %g fps, %d per task",
        len(table),
        config.split,
        config.root,
        config.shape.height,
        config.shape.width,
        config.shape.frames,
        config.shape.fps,
        batch_size,
    )
    return ray.data.from_items(table, override_num_blocks=blocks).map_batches(
        decode_batch, fn_kwargs={"shape": config.shape, "mixed": mixed}, batch_size=batch_size, batch_format="numpy"
    )


def read_split(
    root: Path | str,
    split: str = "train",
    *,
    height: int = 128,
    width: int = 128,
    frames: int = 81,
    fps: float = 15.0,
    media: tuple[str, ...] = MEDIA_COLUMNS,
    exclude_report: Path | str | None = None,
    batch_size: int | None = None,
):
    """``build_dataset`` with keyword arguments: the rows of one split, decoded to the given shape."""
    return build_dataset(
        IngestConfig(
            root=Path(root),
            split=split,
            shape=VideoShape(height=height, width=width, frames=frames, fps=fps),
            media=tuple(media),
            exclude_ids=quarantined_ids(exclude_report) if exclude_report else frozenset(),
            batch_size=batch_size,
        )
    )


# -- decoding (runs in Ray tasks) --


def decode_entry(entry: dict, shape: VideoShape) -> dict:
    """One entry's media read, sampled to ``shape.frames`` at ``shape.fps`` and fitted to height x width."""
    row = {"id": entry["id"], "prompt": entry["prompt"]}
    decoded: dict[str, np.ndarray] = {}  # path -> array (a pose file used as control and VACE video is read once)
    for column in MEDIA_COLUMNS:
        path = entry.get(column)
        if path is None:
            row[column] = None
            continue
        if path not in decoded:
            try:
                decoded[path] = _read_image(path, shape) if column in IMAGE_COLUMNS else _read_video(path, shape)
            except IngestError as e:
                raise IngestError(f"entry {entry['id']!r}: {column} {e}") from e
        row[column] = decoded[path]
    return row


def _read_image(path: str, shape: VideoShape) -> np.ndarray:
    from wanray.inputs import InvalidInput, load_image
    from wanray.video import fit

    try:
        image = load_image(path)
    except InvalidInput as e:
        raise IngestError(f"{path}: {e}") from e
    return np.asarray(fit(image, shape.width, shape.height), dtype=np.uint8)  # [H, W, 3]


def _read_video(path: str, shape: VideoShape) -> np.ndarray:
    """The job's frames of a video, [T, H, W, 3]. Each source frame is fitted (or skipped) as it is decoded, so a
    decode task holds the output's size, not a 1080p/60 fps source's: the batch budget (``row_bytes``) holds."""
    from PIL import Image

    from wanray.datasets.media import open_frames
    from wanray.video import fit

    def fitted(frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] == (shape.height, shape.width):
            return frame  # what fit() would return, without the round trip through PIL
        return np.asarray(fit(Image.fromarray(frame), shape.width, shape.height), dtype=np.uint8)

    kept: dict[int, np.ndarray] = {}  # source index -> fitted frame (an index may serve two output frames)
    try:
        with open_frames(path) as (source_fps, frames):
            indices = shape.source_indices(source_fps or shape.fps)
            wanted, count = set(indices), 0
            for count, frame in enumerate(frames, start=1):
                if count - 1 in wanted:
                    kept[count - 1] = fitted(frame)
                if count > indices[-1]:
                    break
    except Exception as e:  # imageio/ffmpeg raise many types for unreadable files
        raise IngestError(f"{path} could not be decoded ({type(e).__name__}: {e})") from e
    if count <= indices[-1]:
        raise IngestError(
            f"{path} has {count} frames at {source_fps:g} fps ({count / (source_fps or shape.fps):.2f} s); "
            f"the job needs {shape.frames} frames at {shape.fps:g} fps ({shape.seconds:.2f} s), "
            f"i.e. {indices[-1] + 1} source frames"
        )
    return np.stack([kept[i] for i in indices])


def decode_batch(batch: dict[str, np.ndarray], shape: VideoShape, mixed: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """``map_batches`` function: a batch of entries (paths) -> a batch of decoded rows (arrays)."""
    n = len(batch["id"])
    rows = [decode_entry({k: _plain(v[i]) for k, v in batch.items()}, shape) for i in range(n)]
    out: dict[str, np.ndarray] = {
        "id": np.array([r["id"] for r in rows]),
        "prompt": np.array([r["prompt"] for r in rows]),
    }
    for column in MEDIA_COLUMNS:
        values = [r[column] for r in rows]
        if all(v is not None for v in values):
            out[column] = np.stack(values)
        elif column in mixed:
            empty = _empty(column, shape)
            column_values = np.empty(n, dtype=object)
            for i, v in enumerate(values):
                column_values[i] = v if v is not None else empty
            out[column] = column_values
        else:
            out[column] = np.array([None] * n, dtype=object)
    return out


def _plain(value):
    """Numpy scalars and NaN/None from Arrow -> str or None."""
    if value is None or isinstance(value, (float, np.floating)):  # an all-null column arrives as NaN floats
        return None
    return str(value)


def _empty(column: str, shape: VideoShape) -> np.ndarray:
    if column in IMAGE_COLUMNS:
        return np.zeros((0, shape.width, 3), dtype=np.uint8)
    return np.zeros((0, shape.height, shape.width, 3), dtype=np.uint8)


# -- rows -> training samples (runs in Ray Train workers) --


def media(row, column: str) -> np.ndarray | None:
    """A medium of a decoded row, or None when the row does not have it (None or an empty array)."""
    value = row.get(column) if hasattr(row, "get") else row[column]
    if value is None or isinstance(value, (float, np.floating)):  # numpy batches turn null into NaN
        return None
    value = np.asarray(value)
    return None if value.size == 0 else value


def row_to_sample(row):
    """A decoded row -> ``wanray.encoding.TrainingSample`` (PIL frames, as DiffSynth's units take them)."""
    from PIL import Image

    from wanray.encoding import TrainingSample

    def frames(column):
        value = media(row, column)
        return None if value is None else [Image.fromarray(f) for f in value]

    def image(column):
        value = media(row, column)
        return None if value is None else Image.fromarray(value)

    return TrainingSample(
        video=frames("video"),
        prompt=str(row["prompt"]),
        input_image=image("input_image"),
        vace_video=frames("vace_video"),
        vace_video_mask=frames("vace_video_mask"),
        vace_reference_image=image("vace_reference_image"),
        control_video=frames("control_video"),
    )


def iter_samples(shard, *, prefetch_batches: int = 1) -> Iterator[tuple[str, object]]:
    """(id, TrainingSample) for each row of a Ray Train shard (``ray.train.get_dataset_shard("train")``)."""
    for batch in shard.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=prefetch_batches):
        row = {k: v[0] for k, v in batch.items()}
        yield str(row["id"]), row_to_sample(row)

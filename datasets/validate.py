"""Check every row of a dataset and report all problems; bad rows go to a quarantine list.

    wanray datasets validate data/quick [--strict] [--height 128 --width 128 --frames 81 --fps 15]
        [--report report.json] [--quarantine quarantine.csv] [--model embedded]

Per row: the schema (required cells, path syntax, id format); ids unique; every file exists and
resolves inside the root (no ``..``, absolute paths or symlinks out); images and videos decode;
the row's videos agree on frame count, fps and size, and the first-frame image on size; with a job
shape, the videos are long enough and large enough for it; the prompt fits the model's tokenizer
(``text_len`` tokens, 64 for the embedded model). Counts always add up: total = accepted +
quarantined. The command exits non-zero on bad rows only with ``--strict``.
"""

from __future__ import annotations

import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wanray.datasets.schema import (
    IMAGE_COLUMNS,
    ManifestRow,
    RowError,
    duplicate_ids,
    parse_row,
    read_records,
    resolve_media,
    write_manifest,
)
from wanray.datasets.media import VideoInfo, probe_video
from wanray.datasets.shape import VideoShape
from wanray.datasets.split import split_counts

log = logging.getLogger(__name__)

FPS_TOLERANCE = 0.01


@dataclass(kw_only=True, frozen=True)
class ValidationConfig:
    """What to check a dataset against.

    Attributes:
        root: the dataset folder.
        shape: a job's needs (size, frames, fps); None checks only that each row agrees with itself.
        model: whose tokenizer bounds the prompt length (a spec name or a model directory); None skips it.
        workers: rows checked at once (decoding runs in ffmpeg subprocesses, so threads scale).
    """

    root: Path
    shape: VideoShape | None = None
    model: str | None = "embedded"
    model_spec: str | None = None
    workers: int = 4

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass(kw_only=True)
class RowProblem:
    line: int
    id: str
    reasons: list[str]
    record: dict[str, str]


@dataclass(kw_only=True)
class ValidationReport:
    root: str
    manifest: str
    total: int
    accepted_ids: list[str]
    quarantine: list[RowProblem]
    job: dict | None
    tokenizer: dict | None

    @property
    def accepted(self) -> int:
        return len(self.accepted_ids)

    @property
    def quarantined(self) -> int:
        return len(self.quarantine)

    def to_json(self) -> dict:
        return {
            "root": self.root,
            "manifest": self.manifest,
            "total": self.total,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "split": split_counts(self.accepted_ids),
            "job": self.job,
            "tokenizer": self.tokenizer,
            "quarantine": [
                {"line": p.line, "id": p.id, "reasons": p.reasons, "record": p.record} for p in self.quarantine
            ],
            "accepted_ids": self.accepted_ids,
        }

    def summary(self) -> str:
        split = split_counts(self.accepted_ids)
        return (
            f"{self.total} rows: {self.accepted} accepted (train {split['train']}, test {split['test']}), "
            f"{self.quarantined} quarantined"
        )

    def table(self, id_width: int = 24) -> str:
        """Every bad row and why, one problem per line."""
        if not self.quarantine:
            return "no bad rows"
        lines = [f"{'line':>6}  {'id':<{id_width}}  problem"]
        for p in self.quarantine:
            shown = p.id if len(p.id) <= id_width else p.id[: id_width - 1] + "~"
            for i, reason in enumerate(p.reasons):
                lines.append(f"{p.line if i == 0 else '':>6}  {shown if i == 0 else '':<{id_width}}  {reason}")
        return "\n".join(lines)


# -- checks --


class PromptLength:
    """Counts a prompt's tokens exactly as the pipeline will (DiffSynth's tokenizer, whitespace cleaning)."""

    def __init__(self, model: str, model_spec: str | None = None):
        from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer

        from wanray.generation import resolve_model
        from wanray.specs import TOKENIZER_DIR

        root, spec = resolve_model(model, model_spec)
        self.model = spec.name
        self.max_tokens = spec.text_encoder.text_len
        self.tokenizer = HuggingfaceTokenizer(name=str(root / TOKENIZER_DIR), seq_len=None, clean="whitespace")

    def count(self, prompt: str) -> int:
        return int(self.tokenizer(prompt).shape[1])  # includes the end-of-sequence token

    def check(self, prompt: str) -> list[str]:
        n = self.count(prompt)
        if n > self.max_tokens:
            return [
                f"prompt: {n} tokens, but {self.model} reads {self.max_tokens} (the rest would be cut off); shorten it"
            ]
        return []


@functools.lru_cache(maxsize=4)
def prompt_length(model: str, model_spec: str | None = None) -> PromptLength:
    """One tokenizer per model and process (loading it imports DiffSynth)."""
    return PromptLength(model, model_spec)


def check_media(root: Path, row: ManifestRow, shape: VideoShape | None) -> list[str]:
    """File, decoding, agreement and job checks of one schema-valid row."""
    from wanray.inputs import InvalidInput, load_image

    reasons: list[str] = []
    videos: dict[str, VideoInfo] = {}
    images: dict[str, tuple[int, int]] = {}
    probed: dict[Path, VideoInfo | str] = {}  # one file used in two columns is decoded once
    for column, relative in row.media().items():
        try:
            path = resolve_media(root, relative, column)
        except RowError as e:
            reasons += e.reasons
            continue
        if column in IMAGE_COLUMNS:
            try:
                images[column] = load_image(path, column).size  # as ingest reads it: its suffix too
            except InvalidInput as e:
                reasons.append(f"{column}: {relative!r}: {e}")
            continue
        if path not in probed:
            try:
                probed[path] = probe_video(path)
            except Exception as e:  # imageio/ffmpeg raise many types for bad files
                probed[path] = f"{column}: {relative!r} could not be decoded as a video ({type(e).__name__})"
        info = probed[path]
        if isinstance(info, str):
            reasons.append(info)
        elif info.frames == 0:
            reasons.append(f"{column}: {relative!r} has no frames")
        elif info.fps <= 0:
            reasons.append(f"{column}: {relative!r} has no frame rate")
        else:
            videos[column] = info
    reasons += _agreement(videos, images)
    if shape is not None and "video" in videos:
        reasons += _job_fit(videos, shape)
    return reasons


def _agreement(videos: dict[str, VideoInfo], images: dict[str, tuple[int, int]]) -> list[str]:
    reasons = []
    if len({v.frames for v in videos.values()}) > 1:
        reasons.append("frame counts disagree: " + ", ".join(f"{c} {v.frames}" for c, v in videos.items()))
    fps = [v.fps for v in videos.values()]
    if fps and max(fps) - min(fps) > FPS_TOLERANCE:
        reasons.append("fps disagree: " + ", ".join(f"{c} {v.fps:g}" for c, v in videos.items()))
    if len({v.size() for v in videos.values()}) > 1:
        reasons.append("sizes disagree: " + ", ".join(f"{c} {v.size()}" for c, v in videos.items()))
    if "video" in videos and "input_image" in images:
        w, h = images["input_image"]
        if (w, h) != (videos["video"].width, videos["video"].height):
            reasons.append(
                f"input_image is {w}x{h} but video is {videos['video'].size()}; it should be the video's first frame"
            )
    return reasons


def _job_fit(videos: dict[str, VideoInfo], shape: VideoShape) -> list[str]:
    reasons = []
    for column, v in videos.items():
        needed = shape.source_frames_needed(v.fps)
        if v.frames < needed:
            reasons.append(
                f"{column}: {v.frames} frames at {v.fps:g} fps ({v.frames / v.fps:.2f} s) is shorter than the job's "
                f"{shape.frames} frames at {shape.fps:g} fps ({shape.seconds:.2f} s)"
            )
        if v.width < shape.width or v.height < shape.height:
            reasons.append(
                f"{column}: {v.size()} is smaller than the job's {shape.width}x{shape.height} (it would be upscaled)"
            )
    return reasons


def validate(config: ValidationConfig) -> ValidationReport:
    """Check every row; never stops at the first problem. Raises ManifestError only if the manifest is unusable."""
    root = Path(config.root)
    path, records = read_records(root)
    prompts = prompt_length(config.model, config.model_spec) if config.model else None
    reasons: dict[int, list[str]] = {}
    rows: dict[int, ManifestRow] = {}
    for index, (line, record) in enumerate(records):
        try:
            rows[index] = parse_row(record, line)
            reasons[index] = prompts.check(rows[index].prompt) if prompts else []
        except RowError as e:
            reasons[index] = list(e.reasons)
    lines_of = duplicate_ids(records)
    for index, (line, record) in enumerate(records):
        entry_id = (record.get("id") or "").strip()
        if entry_id in lines_of:
            others = [str(n) for n in lines_of[entry_id] if n != line]
            reasons[index].append(f"id: {entry_id!r} is also used on line(s) {', '.join(others)}")
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        media = dict(zip(rows, pool.map(lambda r: check_media(root, r, config.shape), rows.values())))
    for index, found in media.items():
        reasons[index] += found
    accepted, quarantine = [], []
    for index, (line, record) in enumerate(records):
        if reasons[index]:
            entry_id = (record.get("id") or "").strip()
            clean = {k: v for k, v in record.items() if not k.startswith("__")}
            quarantine.append(RowProblem(line=line, id=entry_id, reasons=reasons[index], record=clean))
        else:
            accepted.append(rows[index].id)
    report = ValidationReport(
        root=str(root),
        manifest=str(path),
        total=len(records),
        accepted_ids=accepted,
        quarantine=quarantine,
        job=config.shape.as_dict() if config.shape else None,
        tokenizer={"model": prompts.model, "max_tokens": prompts.max_tokens} if prompts else None,
    )
    assert report.total == report.accepted + report.quarantined
    log.info("validate %s: %s", root, report.summary())
    return report


def write_report(report: ValidationReport, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path


def write_quarantine(report: ValidationReport, path: Path | str) -> Path:
    """The bad rows as a manifest (paths still relative to the dataset root) plus a ``reasons`` column."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{**p.record, "line": str(p.line), "reasons": " | ".join(p.reasons)} for p in report.quarantine]
    return write_manifest(path.parent, records, name=path.name)

"""Synthetic "real-person photo -> dancing anime character" entries, rendered in parallel with Ray Data.

    wanray datasets synth --n 50 --out data/quick [--seed 0] [--height 128 --width 128 --frames 81 --fps 15]
    python -m wanray.datasets.synth --n 5000 --out data/prod [--resume] [--address auto]

Each entry is one character (a small discrete set of attributes) doing one named dance in one scene:

- ``photos/ID.png``: a photo-like still (shaded, textured, lit, sensor noise) at the dance's t=0 pose;
- ``videos/ID.mp4``: the same character as a cel-shaded anime figure dancing (frame 0 = the photo's
  pose and placement), the training target;
- ``poses/ID.mp4``: the dance's OpenPose skeleton video, used as ``control_video`` and as the VACE
  video (no mask: the whole frame is generated, DiffSynth's default);
- a prompt naming the character's attributes, the dance and the scene.

Everything random about entry ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so the same
seed gives the same decoded frames whatever the parallelism, and ``--resume`` can skip finished files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from wanray.datasets.character import Character, prompt_for, sample_character
from wanray.datasets.pose import DANCE_NAMES, DANCES, Placement, get_dance, render_pose_video, skeleton_at
from wanray.datasets.scenes import SCENES, SceneLayout, sample_layout

log = logging.getLogger(__name__)

SCALES = (0.9, 1.0)
X_OFFSETS = (-0.1, 0.0, 0.1)
MAX_ENTRIES = 1_000_000


@dataclass(kw_only=True, frozen=True)
class SynthConfig:
    """A synthetic set: ``n`` entries of ``frames`` frames at ``fps``, ``height`` x ``width`` (even sides)."""

    n: int
    out: Path
    seed: int = 0
    height: int = 128
    width: int = 128
    frames: int = 81
    fps: float = 15.0
    dances: tuple[str, ...] = DANCE_NAMES
    scenes: tuple[str, ...] = SCENES
    entries_per_task: int = 4
    resume: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_ENTRIES:
            raise ValueError(f"n must be from 1 to {MAX_ENTRIES:,}, got {self.n}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        for name, side in (("height", self.height), ("width", self.width)):
            if side < 32 or side > 2048 or side % 2:
                raise ValueError(f"{name} must be an even number from 32 to 2048 (h264 needs even sides), got {side}")
        if not 1 <= self.frames <= 1000:
            raise ValueError(f"frames must be from 1 to 1000, got {self.frames}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be from 1 to 60, got {self.fps}")
        for dance in self.dances:
            get_dance(dance)
        if not self.dances:
            raise ValueError("give at least one dance")
        unknown = [s for s in self.scenes if s not in SCENES]
        if unknown or not self.scenes:
            raise ValueError(f"scenes must be some of {', '.join(SCENES)}, got {', '.join(self.scenes) or 'none'}")
        if self.entries_per_task < 1:
            raise ValueError(f"entries_per_task must be at least 1, got {self.entries_per_task}")

    def to_json(self) -> dict:
        return {**asdict(self), "out": str(self.out), "dances": list(self.dances), "scenes": list(self.scenes)}


def entry_id(seed: int, index: int) -> str:
    return f"s{seed}-{index:05d}"


@dataclass(kw_only=True, frozen=True)
class EntryPlan:
    """Everything random about one entry, drawn from (seed, index) alone."""

    index: int
    id: str
    character: Character
    dance: str
    scene: str
    layout: SceneLayout
    placement: Placement
    photo_seed: tuple[int, int, int] = field(default=(0, 0, 0))

    @property
    def prompt(self) -> str:
        return prompt_for(self.character, self.dance, self.scene)

    def files(self) -> dict[str, str]:
        """Manifest column -> path relative to the dataset root."""
        pose = f"poses/{self.id}.mp4"
        return {
            "video": f"videos/{self.id}.mp4",
            "input_image": f"photos/{self.id}.png",
            "control_video": pose,
            "vace_video": pose,
        }

    def record(self) -> dict[str, str]:
        """The manifest row (DiffSynth columns, plus dance, scene and the attributes as JSON)."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            **self.files(),
            "dance": self.dance,
            "scene": self.scene,
            "attributes": json.dumps(self.character.as_dict(), sort_keys=True),
        }


def plan_entry(config: SynthConfig, index: int) -> EntryPlan:
    rng = np.random.default_rng([config.seed, index])
    character = sample_character(rng)
    dance = str(rng.choice(config.dances))
    scene = str(rng.choice(config.scenes))
    layout = sample_layout(scene, rng)
    placement = Placement(
        height=config.height, width=config.width, scale=float(rng.choice(SCALES)), x_offset=float(rng.choice(X_OFFSETS))
    )
    return EntryPlan(
        index=index,
        id=entry_id(config.seed, index),
        character=character,
        dance=dance,
        scene=scene,
        layout=layout,
        placement=placement,
        photo_seed=(config.seed, index, 1),
    )


@dataclass(frozen=True)
class EntryMedia:
    """An entry's pictures in memory: the photo, the anime target video and the pose video (PIL RGB)."""

    photo: Image.Image
    video: list[Image.Image]
    pose: list[Image.Image]


def render_media(plan: EntryPlan, frames: int, fps: float) -> EntryMedia:
    """Render an entry's photo, anime video and pose video (what ``render_entry`` writes), without writing."""
    from wanray.datasets.render import render_anime_frames, render_photo

    pl = plan.placement
    photo = render_photo(
        plan.character, skeleton_at(plan.dance, 0.0), pl, plan.layout, np.random.default_rng(plan.photo_seed)
    )
    anime = render_anime_frames(plan.character, plan.dance, pl, plan.layout, frames, fps)
    pose = render_pose_video(plan.dance, pl.height, pl.width, frames, fps, scale=pl.scale, x_offset=pl.x_offset)
    return EntryMedia(photo=photo, video=anime, pose=pose)


def render_entry(config: SynthConfig, plan: EntryPlan) -> dict[str, str]:
    """Write an entry's photo and videos under ``config.out`` (each file atomically); returns its manifest row."""
    from wanray.video import write_mp4

    root = Path(config.out)
    files = plan.files()
    paths = {column: root / rel for column, rel in files.items()}
    if config.resume and all(p.is_file() for p in paths.values()):
        return plan.record()
    media = render_media(plan, config.frames, config.fps)
    _atomic(paths["input_image"], lambda tmp: media.photo.save(tmp, format="PNG"))
    _atomic(paths["video"], lambda tmp: write_mp4(media.video, tmp, config.fps))
    _atomic(paths["control_video"], lambda tmp: write_mp4(media.pose, tmp, config.fps))
    return plan.record()


def _atomic(path: Path, write) -> None:
    """Write to a temporary name in the same folder, then rename: a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def render_batch(batch: dict[str, np.ndarray], config: SynthConfig) -> dict[str, list]:
    """Ray Data ``map_batches`` function: entry indices in, manifest rows out (files written as a side effect)."""
    rows = [render_entry(config, plan_entry(config, int(i))) for i in batch["id"]]
    return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}


# what --resume may change: how many entries (the same seed extends the set) and how the work is split
RESUMABLE_CHANGES = ("n", "out", "entries_per_task", "resume")


def _check_resumable(out: Path, config: SynthConfig) -> None:
    """A resumed run keeps the files it finds, so every setting they were rendered with must be the same."""
    earlier_path = out / "synth.json"
    if not earlier_path.is_file():
        return
    earlier, now = json.loads(earlier_path.read_text()), json.loads(json.dumps(config.to_json()))
    changed = [k for k in now if k not in RESUMABLE_CHANGES and earlier.get(k) != now[k]]
    if changed:
        differences = ", ".join(f"{k}: {earlier.get(k)} -> {now[k]}" for k in changed)
        raise ValueError(f"{out} was rendered with other settings ({differences}); --resume keeps the files already "
                         "there, so give the same settings, or pick a new --out")


def generate(config: SynthConfig, address: str | None = None) -> Path:
    """Render every entry with Ray Data (one task per ``entries_per_task`` entries), then write the manifest."""
    import ray

    from wanray.datasets.schema import write_manifest

    out = Path(config.out)
    if (out / "metadata.csv").exists() and not config.resume:
        raise ValueError(
            f"{out} already holds a dataset (metadata.csv); pass --resume to complete it or pick a new --out"
        )
    if config.resume:
        _check_resumable(out, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synth.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    started = time.perf_counter()
    blocks = max(1, math.ceil(config.n / config.entries_per_task))
    ds = ray.data.range(config.n, override_num_blocks=blocks).map_batches(
        render_batch, fn_kwargs={"config": config}, batch_size=config.entries_per_task, num_cpus=1
    )
    records = []
    for row in ds.iter_rows():
        records.append(row)
        if len(records) % max(1, config.n // 10) == 0:
            log.info("synth: %d / %d entries", len(records), config.n)
    if len(records) != config.n:
        raise RuntimeError(f"synth: expected {config.n} entries, Ray Data returned {len(records)}")
    records.sort(key=lambda r: (len(r["id"]), r["id"]))  # entry order (ids past 99999 get longer)
    path = write_manifest(out, records)
    seconds = time.perf_counter() - started
    log.info("synth: wrote %d entries to %s in %.1f s (%.2f entries/s)", config.n, out, seconds, config.n / seconds)
    return path


# -- command line (shared with `wanray datasets synth`) --


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of entries (50 for the quick set, 5000 for production)")
    p.add_argument("--out", required=True, help="dataset folder to create (metadata.csv, photos/, videos/, poses/)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same entries (default 0)")
    p.add_argument("--height", type=int, default=128, help="frame height, even (default 128)")
    p.add_argument("--width", type=int, default=128, help="frame width, even (default 128)")
    p.add_argument("--frames", type=int, default=81, help="frames per video (default 81: 5.4 s at 15 fps)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    p.add_argument(
        "--dance",
        action="append",
        choices=tuple(DANCES),
        default=None,
        help="only these dances (repeat the flag; default: " + ", ".join(DANCE_NAMES) + ", the shipped model's; "
        + ", ".join(d for d in DANCES if d not in DANCE_NAMES) + " is held out of them)",
    )
    p.add_argument(
        "--scene",
        action="append",
        choices=SCENES,
        default=None,
        help="only these scenes (repeat the flag; default: all)",
    )
    p.add_argument("--entries-per-task", type=int, default=4, help="entries rendered by one Ray task (default 4)")
    p.add_argument(
        "--resume", action="store_true", help="complete an interrupted run: keep finished files, render the rest"
    )
    p.add_argument("--address", default=None, help="Ray cluster to use (default: $RAY_ADDRESS, else a local one)")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(
        n=args.n,
        out=Path(args.out),
        seed=args.seed,
        height=args.height,
        width=args.width,
        frames=args.frames,
        fps=args.fps,
        dances=tuple(args.dance or DANCE_NAMES),
        scenes=tuple(args.scene or SCENES),
        entries_per_task=args.entries_per_task,
        resume=args.resume,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    path = generate(config, address=args.address)
    print(f"wrote {config.n} entries: {path.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from wanray.datasets.cli import module_main

    return module_main(sys.modules[__name__], argv, errors=(ValueError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())

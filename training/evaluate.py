"""Rank models on a dataset split: generate every entry with every model as a Ray job, score, write a leaderboard.

    wanray eval --dataset data/quick --split test --out outputs/eval \\
        --models base,lora=base+outputs/train/lora/export/lora.safetensors,full=outputs/train/full/export/model \\
        [--ratings ratings.csv] [--frames 77 --height 720 --width 1280 --steps 50 --seed 0] [--base-model embedded]
    wanray eval --rescore outputs/eval --ratings ratings.csv       # new ratings, no generation

As a Ray job (the same arguments)::

    ray job submit --address http://HEAD:8265 -- python -m wanray.training.evaluate --models base,... \\
        --dataset /shared/data/quick --out /shared/eval

How models are named (``--models``, comma-separated or repeated): ``NAME=SPEC`` where SPEC is a base
model optionally followed by LoRAs, ``BASE[+LORA.safetensors[:ALPHA]]...``. BASE is ``base`` (the run's
``--base-model``, default ``embedded``), a spec name (``embedded``, ``wan2.1-i2v-14b-720p``,
``wan2.2-i2v-a14b``) or a model directory (e.g. a full fine-tune's export). A bare ``base`` means
``base=base``; a bare spec name means ``NAME=NAME``. NAME ([A-Za-z0-9._-], up to 64) names the
model's files and rows. ``wanray train`` exports ``export/lora.safetensors`` (a LoRA run) or the model
directory ``export/model`` (a full fine-tune), so ``lora=base+outputs/train/lora/export/lora.safetensors:0.8``
is a LoRA run's export on the base model at strength 0.8.

Each model gets one Ray actor (1 GPU when the cluster has GPUs, else CPUs) that loads it once and then
generates the split's entries one after another, computing PSNR/SSIM against the entry's reference
video on the actor; the driver writes into ``--out``: ``videos/MODEL/ENTRY.mp4``,
``side_by_side/ENTRY.mp4`` (input photo | reference | each model, labelled), ``results.json``
(metrics and what ran, for ``--rescore``), ``ratings_template.csv``, and the leaderboard
(``leaderboard.csv``, ``entries.csv``, ``leaderboard.md``, ``leaderboard.png``). The reference is
fitted (centre crop + resize) to the generated size, as training data is; an entry's pose video
(``vace_video``, else ``control_video``) conditions models with a VACE branch. On a cluster of several
nodes the dataset, model and LoRA paths must be on storage every node sees (the driver makes relative
paths absolute); ``--out`` is written by the driver.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from wanray.config import DEFAULT_FPS, DEFAULT_FRAMES, LoraRef
from wanray.inputs import FUN_CONTROL_IN_DIM, InvalidInput, check_frames, check_size, load_frames, load_image
from wanray.scoring import ScoreTable, ratings_template, read_ratings, score_table
from wanray.specs import NAMED_SPECS
from wanray.video import write_mp4

log = logging.getLogger(__name__)

BASE_ALIAS = "base"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SPLITS = ("test", "train", "all")
RESULTS_JSON = "results.json"
RATINGS_TEMPLATE = "ratings_template.csv"


# -- which models --


@dataclass(kw_only=True, frozen=True)
class EvalModel:
    """One contestant: a base model (spec name or directory) plus optional LoRAs, under a file-safe name."""

    name: str
    model: str
    loras: tuple[LoraRef, ...] = ()
    spec: str = ""  # as written on the command line, for the leaderboard

    def __post_init__(self) -> None:
        if not MODEL_NAME.match(self.name):
            raise ValueError(
                f"model name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-' (it names files), "
                f"starting with a letter or digit"
            )

    @classmethod
    def parse(cls, text: str, base_model: str = "embedded") -> "EvalModel":
        """``NAME=BASE[+LORA[:ALPHA]]...``, or a bare ``base`` / spec name (see the module docstring)."""
        text = text.strip()
        name, sep, spec = text.partition("=")
        if not sep:
            if text != BASE_ALIAS and text not in NAMED_SPECS:
                raise ValueError(
                    f"model {text!r} needs a spec: write {text}={BASE_ALIAS}+PATH.safetensors[:ALPHA] for a LoRA "
                    f"on the base model, or {text}=PATH/TO/MODEL_DIR for a fully fine-tuned model (bare names "
                    f"allowed: {BASE_ALIAS}, {', '.join(NAMED_SPECS)})"
                )
            name = spec = text
        name, spec = name.strip(), spec.strip()
        base, *lora_parts = [p.strip() for p in spec.split("+")]
        if not base or any(not p for p in lora_parts):
            raise ValueError(
                f"model {text!r}: empty part in {spec!r}; the form is NAME=BASE[+LORA.safetensors[:ALPHA]]..."
            )
        loras = tuple(LoraRef.parse(p) for p in lora_parts)
        for lora in loras:
            if Path(lora.path).suffix != ".safetensors":
                raise ValueError(f"model {name!r}: LoRA {str(lora.path)!r} must be a .safetensors file")
        return cls(name=name, model=base_model if base == BASE_ALIAS else base, loras=loras, spec=spec)

    def resolved(self) -> "EvalModel":
        """The same model with absolute paths: Ray workers do not run in the driver's directory."""
        from dataclasses import replace

        model = self.model if self.model in NAMED_SPECS else str(Path(self.model).expanduser().resolve())
        loras = tuple(replace(l, path=Path(l.path).expanduser().resolve()) for l in self.loras)
        return replace(self, model=model, loras=loras)


def parse_models(values: Sequence[str], base_model: str = "embedded") -> tuple[EvalModel, ...]:
    """Every ``--models`` value, split at commas (so model paths cannot contain commas)."""
    if base_model == BASE_ALIAS:
        raise ValueError(f"--base-model must be a spec name or a directory, not {BASE_ALIAS!r}")
    items = [item for value in values for item in value.split(",") if item.strip()]
    return tuple(EvalModel.parse(item, base_model) for item in items)


# -- the job's config --


@dataclass(kw_only=True)
class EvalConfig:
    """An evaluation run.

    Attributes:
        models: the contestants, in the order they appear in the side-by-side videos.
        dataset: dataset root holding ``metadata.csv`` (paths in it are relative to the root).
        out: where results go (created).
        split: ``test`` (the 1-in-10 held-out split), ``train`` or ``all``.
        ratings: optional ratings CSV (see ``wanray.scoring``); without it every total is partial.
        max_entries: evaluate only the first N entries of the split (by id): for smoke runs.
        frames / height / width / steps / cfg / seed / fps: the generation request for every entry
            (None: the model's default size, steps and cfg).
        device: ``auto`` (CUDA when the cluster has GPUs or a model is larger than the embedded one),
            ``cpu`` or ``cuda``.
        gpus_per_model / cpus_per_model: resources of each model's actor (None GPUs: 1 if the cluster has any).
        attention: attention backend for every model (see ``wanray.attention``).
        address: Ray address to connect to (None: ``RAY_ADDRESS``, else a local Ray).
    """

    models: tuple[EvalModel, ...]
    dataset: Path
    out: Path
    split: str = "test"
    ratings: Path | None = None
    max_entries: int | None = None
    frames: int = DEFAULT_FRAMES
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int = 0
    fps: int = DEFAULT_FPS
    device: str = "auto"
    gpus_per_model: float | None = None
    cpus_per_model: float = 1.0
    attention: str = "auto"
    address: str | None = None

    def __post_init__(self) -> None:
        self.dataset, self.out = Path(self.dataset), Path(self.out)
        self.ratings = Path(self.ratings) if self.ratings is not None else None
        if not self.models:
            raise ValueError("give at least one model (--models base,...)")
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"model names must be unique; repeated: {', '.join(repeated)}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        check_frames(self.frames)
        if (self.height is None) != (self.width is None):
            raise ValueError("give both --height and --width, or neither (the models' default size)")
        if self.height is not None:
            check_size(self.height, self.width)
        if self.max_entries is not None and self.max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {self.max_entries}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.cpus_per_model <= 0 or (self.gpus_per_model is not None and self.gpus_per_model < 0):
            raise ValueError("cpus_per_model must be > 0 and gpus_per_model >= 0")


def embedded_smoke_eval(*, models: Sequence[str], dataset: Path, out: Path, **overrides) -> EvalConfig:
    """A minutes-on-a-laptop run: embedded-sized models at 64x64, 5 frames, 2 steps."""
    settings = {"height": 64, "width": 64, "frames": 5, "steps": 2, "fps": 8, **overrides}
    return EvalConfig(models=parse_models(models), dataset=dataset, out=out, **settings)


# -- the dataset --


@dataclass(kw_only=True, frozen=True)
class EvalEntry:
    """One dataset row, with absolute paths (confined to the dataset root)."""

    id: str
    prompt: str
    input_image: Path
    video: Path
    control_video: Path | None = None
    vace_video: Path | None = None
    vace_video_mask: Path | None = None
    vace_reference_image: Path | None = None

    @property
    def file_name(self) -> str:
        """A file-safe stem for this entry's outputs."""
        if MODEL_NAME.match(self.id):
            return self.id
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.id)[:48].lstrip(".") + "-" + _short_hash(self.id)


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def read_split_entries(root: Path, split: str) -> list[EvalEntry]:
    """The entries of one split (``test``, ``train``, ``all``) of a dataset root, sorted by id.

    The manifest is read and checked by ``wanray.datasets.schema`` and split by
    ``wanray.datasets.split`` (the same 9:1 split training uses); every media path is confined to the
    root and must exist. All bad entries are reported at once.
    """
    from wanray.datasets.schema import RowError, read_manifest, resolve_media
    from wanray.datasets.split import select_split

    entries, problems = [], []
    for row in select_split(read_manifest(root), split):
        paths, bad = {}, []
        for column, relative in row.media().items():
            try:
                paths[column] = resolve_media(root, relative, column)
            except RowError as e:
                bad.append(str(e))
        if bad:
            problems.append(f"entry {row.id!r} (manifest line {row.line}): {'; '.join(bad)}")
        else:
            entries.append(EvalEntry(id=row.id, prompt=row.prompt, **paths))
    if problems:
        raise InvalidInput(f"{root}: {len(problems)} unusable media path(s):\n  " + "\n  ".join(problems[:20]))
    return sorted(entries, key=lambda e: e.id)


def check_entries(entries: Sequence[EvalEntry], frames: int, fps: float) -> None:
    """Before any model loads: every photo decodes, every reference (and pose video) has enough frames at ``fps``."""
    problems = []
    for e in entries:
        try:
            load_image(e.input_image, "input_image")
            load_frames(e.video, frames, 16, 16, "video", fps)
            if e.vace_video or e.control_video:
                what = "vace_video" if e.vace_video else "control_video"
                load_frames(e.vace_video or e.control_video, frames, 16, 16, what, fps)
        except InvalidInput as err:
            problems.append(f"entry {e.id!r}: {err}")
    if problems:
        raise InvalidInput(f"{len(problems)} entr{'y' if len(problems) == 1 else 'ies'} cannot be evaluated:\n  "
                           + "\n  ".join(problems))


def reference_frames(entry: EvalEntry, frames: int, width: int, height: int, fps: float) -> np.ndarray:
    """[frames, height, width, 3] uint8: the entry's reference video sampled at ``fps`` and fitted, as training data
    is (frame i is the moment i / fps, whatever the file's rate)."""
    from wanray.video import frames_to_array

    return frames_to_array(load_frames(entry.video, frames, width, height, "video", fps))


# -- the Ray actor --


class ModelRunner:
    """One model, loaded once; generates and scores entries one after another. Runs as a Ray actor."""

    def __init__(self, model: EvalModel, device: str, attention: str):
        from wanray.config import ModelConfig
        from wanray.generation import WanGenerator

        self.model = model
        self.generator = WanGenerator.load(ModelConfig(model=model.model, device=device, attention=attention))
        self.generator.set_loras(model.loras)

    def describe(self) -> dict:
        spec = self.generator.spec
        return {"spec": spec.name, "device": str(self.generator.device), "vace": spec.vace is not None,
                "fun_control": spec.dit.in_dim == FUN_CONTROL_IN_DIM}

    def run(self, entry: EvalEntry, config: EvalConfig) -> dict:
        """Generate one entry; return its frames, metrics against the reference, and what ran."""
        from wanray.config import GenerationConfig
        from wanray.metrics import compare_videos
        from wanray.video import frames_to_array

        conditioning, unused = conditioning_for(entry, self.describe())
        request = GenerationConfig(
            image=entry.input_image, prompt=entry.prompt, seed=config.seed, height=config.height, width=config.width,
            frames=config.frames, fps=config.fps, steps=config.steps, cfg=config.cfg, loras=self.model.loras,
            **conditioning,
        )
        result = self.generator.generate(request)
        generated = frames_to_array(result.frames)  # [T, H, W, 3]
        reference = reference_frames(entry, config.frames, generated.shape[2], generated.shape[1], config.fps)
        metrics = compare_videos(generated, reference)
        return {"frames": generated, "metrics": metrics.to_dict(), "info": result.info, "unused": unused}


def conditioning_for(entry: EvalEntry, model: dict) -> tuple[dict, list[str]]:
    """The entry's pose/VACE inputs this model can take, and the names of those it cannot."""
    pose = entry.vace_video or entry.control_video
    given = {k: getattr(entry, k) for k in ("control_video", "vace_video", "vace_video_mask", "vace_reference_image")}
    if model["vace"]:
        used = {"vace_video": pose, "vace_video_mask": entry.vace_video_mask,
                "vace_reference_image": entry.vace_reference_image}
        used = {k: v for k, v in used.items() if v is not None}
        consumed = set(used) | ({"control_video"} if pose is not None and entry.control_video == pose else set())
    elif model["fun_control"] and entry.control_video is not None:
        used, consumed = {"control_video": entry.control_video}, {"control_video"}
    else:
        used, consumed = {}, set()
    unused = sorted(k for k, v in given.items() if v is not None and k not in consumed)
    return used, unused


# -- the driver --


@dataclass(kw_only=True)
class EvalRun:
    """What a finished evaluation wrote."""

    table: ScoreTable
    out: Path
    files: dict[str, Path] = field(default_factory=dict)


def run_evaluation(config: EvalConfig) -> EvalRun:
    """Check inputs, start one actor per model, generate and score every entry, write the results.

    Every actor is asked for at once; Ray starts as many as the cluster has room for (one per GPU on
    a GPU cluster) and the rest when a finished model's actor is ended, so more models than GPUs
    run in turn. Each video is written as it arrives; the side-by-side videos are composed at the end
    from the written mp4s (metrics are always computed on the raw frames, on the actor).
    """
    import ray

    check_models(config.models)
    models = tuple(m.resolved() for m in config.models)
    entries = read_split_entries(config.dataset, config.split)[: config.max_entries]
    if not entries:
        raise ValueError(f"the {config.split!r} split of {str(config.dataset)!r} has no entries")
    if config.ratings is not None:
        read_ratings(config.ratings)  # a bad ratings file fails now, not after hours of generation
    check_entries(entries, config.frames, config.fps)
    config.out.mkdir(parents=True, exist_ok=True)

    if not ray.is_initialized():
        ray.init(address=config.address)
    cpu_sized = all(_spec_name(m) == "embedded" for m in models)
    gpus = _gpus_per_model(config, ray.cluster_resources().get("GPU", 0), cpu_sized=cpu_sized)
    device = "cuda" if gpus > 0 else "cpu"
    runner = ray.remote(ModelRunner)
    started = time.perf_counter()
    log.info("evaluating %d models on %d %s entries (%s, %s GPU / %s CPU per model)", len(config.models),
             len(entries), config.split, device, gpus, config.cpus_per_model)
    actors = {
        m.name: runner.options(num_cpus=config.cpus_per_model, num_gpus=gpus).remote(m, device, config.attention)
        for m in models
    }
    pending = {}  # ref -> (model name, entry; None for the load check)
    for m in models:
        pending[actors[m.name].describe.remote()] = (m.name, None)
        pending.update({actors[m.name].run.remote(e, config): (m.name, e) for e in entries})
    left = {m.name: len(entries) + 1 for m in config.models}
    described, outputs = {}, {}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            name, entry = pending.pop(ref)
            output = _get(ref, name, entry)
            if entry is None:
                described[name] = output
            else:
                write_mp4(output.pop("frames"), _video_path(config.out, name, entry), config.fps)
                outputs[(name, entry.id)] = output
                done = len(outputs)
                log.info("[%d/%d] %s on %s: PSNR %.2f dB, SSIM %.3f", done, len(entries) * len(config.models), name,
                         entry.id, output["metrics"]["psnr_mean"], output["metrics"]["ssim_mean"])
            left[name] -= 1
            if not left[name]:
                ray.kill(actors.pop(name))  # frees its GPU for a model still waiting
    finally:
        for actor in actors.values():
            ray.kill(actor)
    side_by_side = {e.id: str(_write_side_by_side(config, e).relative_to(config.out)) for e in entries}
    record = {
        "config": _config_record(config, device, gpus),
        "models": [{**asdict(m), "loaded": described[m.name]} for m in models],
        "entries": [{"id": e.id, "file": e.file_name, "prompt": e.prompt} for e in entries],
        "results": [{"model": m.name, "entry": e.id, **outputs[(m.name, e.id)]} for e in entries for m in models],
        "side_by_side": side_by_side,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (config.out / RESULTS_JSON).write_text(json.dumps(record, indent=2, default=str) + "\n")
    template = ratings_template([(m.name, e.id) for e in entries for m in models])
    (config.out / RATINGS_TEMPLATE).write_text(template)
    return rescore(config.out, config.ratings)


def _gpus_per_model(config: EvalConfig, cluster_gpus: float, *, cpu_sized: bool) -> float:
    """GPUs per model actor.

    ``auto``: 1 when the cluster has GPUs now, or when any model is larger than the embedded one (a
    14B model on CPU is never meant: the job waits for an autoscaler to add GPU nodes); else 0.
    ``cuda``: 1 unless given. ``cpu``: 0.
    """
    gpus = config.gpus_per_model
    if gpus is None:
        wants_gpu = config.device == "cuda" or (config.device == "auto" and (cluster_gpus >= 1 or not cpu_sized))
        gpus = 1 if wants_gpu else 0
    if config.device == "cuda" and gpus == 0:
        raise ValueError("--device cuda needs --gpus-per-model above 0")
    if config.device == "cpu" and gpus > 0:
        raise ValueError("--device cpu takes no GPUs; drop --gpus-per-model")
    if gpus > cluster_gpus:
        log.warning("each model asks for %g GPU(s) but the cluster has %g now: waiting for the autoscaler to add "
                    "GPU nodes (on a fixed cluster this waits forever: stop with Ctrl-C)", gpus, cluster_gpus)
    return gpus


def _spec_name(model: EvalModel) -> str:
    """The spec a model is built on (cheap: a name, or the directory's spec file / config.json)."""
    from wanray.specs import spec_for_dir

    return model.model if model.model in NAMED_SPECS else spec_for_dir(Path(model.model)).name


def rescore(out: Path, ratings: Path | None = None) -> EvalRun:
    """(Re)write the leaderboard of an evaluation directory from its results.json and a ratings CSV."""
    from wanray.training.leaderboard import write_leaderboard

    out = Path(out)
    path = out / RESULTS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{str(out)!r} holds no {RESULTS_JSON}: run `wanray eval` with --out {out} first")
    record = json.loads(path.read_text())
    entry_metrics = {(r["model"], r["entry"]): r["metrics"] for r in record["results"]}
    table = score_table(
        {pair: (m["psnr_mean"], m["ssim_mean"]) for pair, m in entry_metrics.items()},
        read_ratings(ratings) if ratings is not None else (),
    )
    files = write_leaderboard(
        table, out, specs={m["name"]: m["spec"] for m in record["models"]}, entry_metrics=entry_metrics,
        side_by_side=record["side_by_side"], notes=_notes(record),
    )
    files["results"] = path
    files["ratings_template"] = out / RATINGS_TEMPLATE
    log.info("leaderboard: %s", files["markdown"])
    return EvalRun(table=table, out=out, files=files)


def check_models(models: Sequence[EvalModel]) -> None:
    """Cheap checks before any actor starts: LoRA files exist, base directories exist.

    Named 14B specs are resolved on the actor (their weights may live only on the GPU nodes)."""
    for m in models:
        if m.model not in NAMED_SPECS and not Path(m.model).expanduser().is_dir():
            raise FileNotFoundError(
                f"model {m.name!r}: base {m.model!r} is neither a spec name ({', '.join(NAMED_SPECS)}) nor a directory"
            )
        for lora in m.loras:
            if not Path(lora.path).is_file():
                raise FileNotFoundError(f"model {m.name!r}: LoRA file {str(lora.path)!r} does not exist")


def _get(ref, model: str, entry: EvalEntry | None):
    """ray.get, with errors that name the model (and entry) and end in the original exception line."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if e.cause is not None else e
        where = f"model {model!r} failed to load" if entry is None else f"model {model!r} on entry {entry.id!r}"
        raise RuntimeError(f"{where}: {type(cause).__name__}: {cause}") from None
    except ray.exceptions.RayActorError as e:
        log.debug("%s", e)
        if e.actor_init_failed:
            raise RuntimeError(f"model {model!r} failed to load: {_exception_lines(str(e))}") from None
        where = "while loading" if entry is None else f"on entry {entry.id!r}"
        raise RuntimeError(f"model {model!r}: its actor died {where}: {e}") from None


def _exception_lines(traceback_text: str) -> str:
    """``Type: message`` (and its continuation lines) at the end of a formatted traceback."""
    lines = traceback_text.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^[A-Za-z_][\w.]*: ", lines[i]):
            return "\n".join(lines[i:])
    return traceback_text


def _video_path(out: Path, model: str, entry: EvalEntry) -> Path:
    return out / "videos" / model / f"{entry.file_name}.mp4"


def _write_side_by_side(config: EvalConfig, entry: EvalEntry) -> Path:
    """side_by_side/ENTRY.mp4 from the written videos; panels take the first model's size."""
    from wanray.training.leaderboard import side_by_side_frames, write_side_by_side
    from wanray.video import frames_to_array, read_video

    videos = {m.name: frames_to_array(read_video(_video_path(config.out, m.name, entry))[0]) for m in config.models}
    height, width = next(iter(videos.values())).shape[1:3]
    frames = side_by_side_frames(
        load_image(entry.input_image, "input_image"),
        reference_frames(entry, config.frames, width, height, config.fps),
        videos,
        height=height,
        width=width,
    )
    return write_side_by_side(config.out / "side_by_side" / f"{entry.file_name}.mp4", frames, config.fps)


def _config_record(config: EvalConfig, device: str, gpus: float) -> dict:
    record = {k: v for k, v in asdict(config).items() if k != "models"}
    return {**record, "resolved_device": device, "resolved_gpus_per_model": gpus}


def _notes(record: dict) -> list[str]:
    c = record["config"]
    first = record["results"][0]["info"] if record["results"] else {}
    notes = [
        f"{len(record['entries'])} entries of the {c['split']!r} split of {c['dataset']}; {c['frames']} frames at "
        f"{first.get('width', c['width'])}x{first.get('height', c['height'])}, "
        f"{first.get('steps', c['steps'])} step(s), "
        f"seed {c['seed']}, on {c['resolved_device']}."
    ]
    unused: dict[tuple[str, str], int] = {}
    for r in record["results"]:
        for column in r.get("unused", []):
            unused[(r["model"], column)] = unused.get((r["model"], column), 0) + 1
    for (model, column), count in sorted(unused.items()):
        notes.append(
            f"model {model!r} cannot take the entries' {column} (no matching branch): not used for {count} entries."
        )
    return notes


def main(argv: list[str] | None = None) -> int:
    """``python -m wanray.training.evaluate ARGS`` is ``wanray eval ARGS`` (the Ray job entrypoint)."""
    from wanray.cli import main as cli_main

    return cli_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

"""TeaCache for wanray's models: calibrated coefficient sets, DiffSynth's TeaCache taught to use them, and the
calibration that fits them.

TeaCache (Liu et al., 2024) skips a DiT pass while the summed, rescaled change of the timestep-modulated input
(``t_mod``) since the last computed pass stays under a threshold, reusing that pass's residual instead. The
rescaling is a polynomial, fitted per model *and weights*, from the relative L1 change of ``t_mod`` between
consecutive steps to the relative L1 change of the DiT's output. DiffSynth ships sets for four Wan2.1 models
(Wan2.1-I2V-14B-720P uses DiffSynth's); the bundled embedded model's set is fitted here, on its trained weights:

    .venv/bin/python -m wanray.tea_cache calibrate --model embedded --cases 4 --seed 1000 --steps 12,25,50 \\
        --frames 77 --json points.json
    .venv/bin/python -m wanray.tea_cache fit points.json --degree 4 \\
        --json bench/results/tea_cache_calibration_embedded.json

It runs whole denoising runs (synthetic photos, their dance's pose video as the VACE input, the model's default
size and frames, one noise seed per photo) with every pass computed, records per pass and step the input change
and the output change, and fits ``numpy.polyfit(input, output, degree)`` (4 by default, as DiffSynth's sets).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class CoefficientSet:
    coefficients: tuple[float, ...]  # numpy.poly1d order (highest power first), as DiffSynth's
    weights_sha256: str  # of the DiT files they were fitted on (``weights_sha256``): new weights need a new fit
    command: str  # what produced them


EMBEDDED_ID = "wanray-embedded"
COEFFICIENTS: dict[str, CoefficientSet] = {
    # The bundled DiT + VACE (run 21 of training/README.md), fitted 2026-12-08 on a 2-core CPU: 4 synthetic photos x
    # 12/25/50 steps at the model's 128x128x77 and its default cfg 1 = 336 points, input changes 0.0030..0.156.
    # Degree 4 as DiffSynth's sets, R^2 0.86; positive over runs of 4-150 steps (lowest 0.00071, at 150).
    # Points and fit: bench/results/tea_cache_calibration_embedded.json. (Runs 11, 12, 15, 16, 20's DiT: R^2 0.86;
    # run 6's: 0.79.)
    EMBEDDED_ID: CoefficientSet(
        coefficients=(-1.41811653e03, 3.64677355e02, -2.52413551e01, 6.75908565e-01, -1.40342289e-04),
        weights_sha256="be61f2a9a970ed7fdd88973daab9d1ee6d730865524685dac07d04e50494275d",
        command="python -m wanray.tea_cache calibrate --model embedded --cases 4 --seed 1000 --steps 12,25,50 "
                "--frames 77 --json points.json, then python -m wanray.tea_cache fit points.json --degree 4",
    ),
}
# A set DiffSynth knows, to construct its TeaCache under before giving it ours (see ``install``).
_DIFFSYNTH_STAND_IN = "Wan2.1-I2V-14B-720P"


# -- DiffSynth's TeaCache, with our coefficient sets --


def install() -> None:
    """Let DiffSynth's ``TeaCache`` take our ids. Its sets are a dict literal built inside ``__init__``, which
    refuses any other id, so there is nothing to register into: for one of our ids the wrapper constructs it
    under a DiffSynth id, then puts our coefficients in. Everything else (the skip rule, the first and last steps
    always computed, one cache per guidance pass) stays DiffSynth's. Idempotent."""
    from diffsynth.pipelines import wan_video

    original = wan_video.TeaCache.__init__
    if getattr(original, "wanray", False):
        return

    def __init__(self, num_inference_steps, rel_l1_thresh, model_id):
        ours = COEFFICIENTS.get(model_id)
        original(self, num_inference_steps, rel_l1_thresh, _DIFFSYNTH_STAND_IN if ours else model_id)
        if ours:
            self.coefficients_dict[model_id] = self.coefficients = list(ours.coefficients)

    __init__.wanray = True
    wan_video.TeaCache.__init__ = __init__


def diffsynth_ids() -> tuple[str, ...]:
    """The coefficient sets DiffSynth itself ships."""
    from diffsynth.pipelines import wan_video

    return tuple(k for k in wan_video.TeaCache(2, 0.0, _DIFFSYNTH_STAND_IN).coefficients_dict if k not in COEFFICIENTS)


def known_ids() -> tuple[str, ...]:
    return (*diffsynth_ids(), *COEFFICIENTS)


def weights_sha256(model_dir: Path) -> str:
    """sha256 over the DiT tensors of a model directory (``diffusion_pytorch_model*.safetensors``, VACE included):
    names, dtypes, shapes and values in name order, so re-saving the same weights keeps it."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).rglob("diffusion_pytorch_model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no diffusion_pytorch_model*.safetensors")
    tensors = {}
    for path in files:
        with safe_open(str(path), "pt") as f:
            names = f.keys()  # safe_open has no __iter__
            tensors.update({f"{path.relative_to(model_dir)}:{key}": f.get_tensor(key) for key in names})
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# -- calibration --


def rel_l1(now: torch.Tensor, before: torch.Tensor) -> float:
    """Relative L1 change, as DiffSynth's ``TeaCache.check`` measures it: mean|now - before| / mean|before|."""
    now, before = now.float(), before.float()
    return ((now - before).abs().mean() / before.abs().mean()).item()


@dataclass
class PassTrace:
    """One guidance pass of one run: per step from the second on, the change since the step before of the
    modulated input, of the blocks' residual (what TeaCache reuses) and of the DiT's output."""

    input: list[float] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)
    output: list[float] = field(default_factory=list)
    _last: dict = field(default_factory=dict, repr=False)

    def _change(self, name: str, value: torch.Tensor) -> None:
        if name in self._last:
            getattr(self, name).append(rel_l1(value, self._last[name]))
        self._last[name] = value.detach().clone()

    # DiffSynth's TeaCache protocol (``model_fn_wan_video`` calls check, then store when the blocks ran).
    def check(self, dit, x: torch.Tensor, t_mod: torch.Tensor) -> bool:
        self._change("input", t_mod)
        self._last["hidden"] = x.clone()
        return False  # never skip: calibration sees every pass

    def store(self, hidden_states: torch.Tensor) -> None:
        self._change("residual", hidden_states - self._last.pop("hidden"))

    def to_dict(self) -> dict:
        return {"input": self.input, "residual": self.residual, "output": self.output}


@contextmanager
def recording(pipe) -> Iterator[list[PassTrace]]:
    """While open, every guidance pass of ``pipe``'s runs gets a ``PassTrace`` where DiffSynth's TeaCache unit
    would create its TeaCache (so the pipeline calls it as it would a cache), and ``pipe.model_fn``'s output is
    added to it. The traces list grows by one per pass (positive, then negative) per run."""
    from diffsynth.pipelines.wan_video import WanVideoUnit_TeaCache

    units = [u for u in pipe.units if isinstance(u, WanVideoUnit_TeaCache)]
    if len(units) != 1:
        raise RuntimeError(f"expected one TeaCache unit in DiffSynth's pipeline, found {len(units)}")
    traces: list[PassTrace] = []
    model_fn = pipe.model_fn

    def process(pipe, **_) -> dict:
        traces.append(PassTrace())
        return {"tea_cache": traces[-1]}

    def recorded_model_fn(**kwargs):
        out = model_fn(**kwargs)
        kwargs["tea_cache"]._change("output", out)
        return out

    units[0].process, pipe.model_fn = process, recorded_model_fn
    try:
        yield traces
    finally:
        del units[0].process
        pipe.model_fn = model_fn


def fit(x: Sequence[float], y: Sequence[float], degree: int = 4) -> np.ndarray:
    """Least-squares polynomial from input change to output change, highest power first (``numpy.poly1d``)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"input and output changes must be two equally long lists, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("the changes hold NaN or infinite values (a diverged run?); nothing to fit")
    if len(np.unique(x)) <= degree:
        raise ValueError(f"a degree-{degree} fit needs at least {degree + 1} distinct input changes, "
                         f"got {len(np.unique(x))}: run more steps")
    return np.polyfit(x, y, degree)


def r_squared(coefficients: np.ndarray, x: Sequence[float], y: Sequence[float]) -> float:
    y = np.asarray(y, dtype=float)
    residual = y - np.poly1d(coefficients)(np.asarray(x, dtype=float))
    return float(1.0 - (residual**2).sum() / ((y - y.mean()) ** 2).sum())


def fit_runs(runs: Sequence[dict], target: str = "output", degree: int = 4) -> dict:
    """Fit the recorded runs' input changes to their ``target`` changes: coefficients, R², point count, range."""
    x = [v for run in runs for v in run["input"]]
    y = [v for run in runs for v in run[target]]
    coefficients = fit(x, y, degree)
    return {"target": target, "degree": degree, "coefficients": [float(c) for c in coefficients],
            "r2": r_squared(coefficients, x, y), "points": len(x), "input_range": [min(x), max(x)]}


def input_changes(pipe, steps: int, shift: float) -> np.ndarray:
    """The relative L1 changes of ``t_mod`` between consecutive steps of a ``steps``-step run. ``t_mod`` depends on
    the timestep alone, so these are the points TeaCache's polynomial is evaluated at, whatever the request."""
    from diffsynth.models.wan_video_dit import sinusoidal_embedding_1d

    scheduler = copy.deepcopy(pipe.scheduler)  # set_timesteps changes its state
    scheduler.set_timesteps(steps, shift=shift)
    dit = pipe.dit
    with torch.no_grad():
        t_mods = [dit.time_projection(dit.time_embedding(sinusoidal_embedding_1d(
            dit.freq_dim, t.unsqueeze(0).to(device=pipe.device, dtype=pipe.torch_dtype)))) for t in scheduler.timesteps]
    return np.array([rel_l1(now, before) for now, before in zip(t_mods[1:], t_mods)])


CHECKED_STEP_COUNTS = (4, 6, 8, 12, 16, 25, 35, 50, 75, 100, 150)


def lowest_value(coefficients: Sequence[float], pipe, shift: float) -> tuple[float, int]:
    """The polynomial's lowest value over every step of runs of 4 to 150 steps, and that run's step count. Below
    zero, those steps would count as less than no change and let TeaCache skip on; refit (another degree)."""
    poly = np.poly1d(coefficients)
    return min((float(poly(input_changes(pipe, n, shift)).min()), n) for n in CHECKED_STEP_COUNTS)


@dataclass(frozen=True)
class Case:
    """One synthetic request: a photo, its prompt and its dance's pose video (the VACE input)."""

    id: str
    photo: object  # PIL image
    prompt: str
    pose: list


def synthetic_cases(n: int, seed: int, height: int, width: int, frames: int, fps: float = 15.0) -> list[Case]:
    """Entries ``0..n-1`` of the synthetic set with this seed, rendered in memory (``wanray.datasets.synth``)."""
    from wanray.datasets.pose import render_pose_video, skeleton_at
    from wanray.datasets.render import render_photo
    from wanray.datasets.synth import SynthConfig, plan_entry

    config = SynthConfig(n=n, out=Path("unused"), seed=seed, height=height, width=width, frames=frames, fps=fps)
    cases = []
    for i in range(n):
        plan = plan_entry(config, i)
        pl = plan.placement
        photo = render_photo(plan.character, skeleton_at(plan.dance, 0.0), pl, plan.layout,
                             np.random.default_rng(plan.photo_seed))
        pose = render_pose_video(plan.dance, height, width, frames, fps, scale=pl.scale, x_offset=pl.x_offset)
        cases.append(Case(id=plan.id, photo=photo, prompt=plan.prompt, pose=pose))
    return cases


def calibrate(generator, cases: Sequence[Case], steps: Sequence[int], frames: int, target: str = "output",
              degree: int = 4) -> dict:
    """Record every pass of every (case, step count) run, fit, and return the points and the fit."""
    from wanray.config import GenerationConfig

    runs = []
    for i, case in enumerate(cases):
        for n in steps:
            config = GenerationConfig(image=case.photo, prompt=case.prompt, vace_video=case.pose, frames=frames,
                                      steps=n, seed=i)
            started = time.perf_counter()
            with recording(generator.pipe) as traces:
                generator.generate(config)
            print(f"  {case.id} {n} steps: {len(traces)} passes, {time.perf_counter() - started:.1f} s", flush=True)
            runs += [{"case": case.id, "steps": n, "pass": p, **t.to_dict()} for p, t in zip(("positive", "negative"), traces)]
    return {**fit_runs(runs, target, degree), "runs": runs}


# -- command line --


def _step_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give step counts as integers separated by commas, e.g. 12,25,50; got {text!r}")
    if any(n < 3 for n in counts):
        raise argparse.ArgumentTypeError(f"each step count must be at least 3 (the first and last always compute), got {text!r}")
    return counts


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wanray.tea_cache", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("calibrate", help="run the model, fit TeaCache coefficients for its weights, print them")
    c.add_argument("--model", default="embedded", help="embedded, a named spec or a model directory")
    c.add_argument("--cases", type=_positive, default=4, help="synthetic photos (each with its own noise seed)")
    c.add_argument("--seed", type=int, default=1000, help="synthetic set seed (the training set's is 0)")
    c.add_argument("--steps", type=_step_counts, default=(12, 25, 50), help="step counts to run, e.g. 12,25,50")
    c.add_argument("--frames", type=int, default=None, help="frames (default: the product's 77)")
    f = sub.add_parser("fit", help="fit again the points a calibration wrote (--json), e.g. at another degree")
    f.add_argument("points", type=Path, help="a calibration's --json file")
    for q in (c, f):
        q.add_argument("--device", default="auto")
        q.add_argument("--target", choices=("output", "residual"), default="output",
                       help="the change fitted: the DiT's output (the TeaCache paper's) or the blocks' residual")
        q.add_argument("--degree", type=int, choices=range(1, 9), default=4, metavar="1..8")
        q.add_argument("--json", type=Path, default=None, help="write every point and the fit here")
    return p


def _read_points(parser: argparse.ArgumentParser, path: Path) -> dict:
    try:
        points = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        parser.error(f"{path}: cannot read it: {e}")
    runs = points.get("runs") if isinstance(points, dict) else None
    if not isinstance(points.get("model") if runs else None, str) or not all(
            isinstance(run, dict) and {"input", "output", "residual"} <= run.keys() for run in runs):
        parser.error(f"{path}: not a calibration's points (python -m wanray.tea_cache calibrate --json)")
    return points


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from wanray import ModelConfig
    from wanray.config import DEFAULT_FRAMES
    from wanray.generation import WanGenerator, resolve_model
    from wanray.inputs import InvalidInput, check_frames

    points = _read_points(parser, args.points) if args.command == "fit" else None
    model = points["model"] if points else args.model
    frames = args.frames if args.command == "calibrate" and args.frames is not None else DEFAULT_FRAMES
    try:
        check_frames(frames)
        root, spec = resolve_model(model)
    except (InvalidInput, FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json: folder {args.json.parent} does not exist")
    if points is not None:  # refit first: bad points fail before the model loads
        try:
            result = {**points, **fit_runs(points["runs"], args.target, args.degree)}
        except ValueError as e:
            parser.error(f"{args.points}: {e}")
    generator = WanGenerator.load(ModelConfig(model=model, device=args.device))
    if points is None:
        print(f"calibrating {spec.name}: {args.cases} cases x steps {args.steps}, {spec.default_height}x"
              f"{spec.default_width}x{frames}", flush=True)
        cases = synthetic_cases(args.cases, args.seed, spec.default_height, spec.default_width, frames)
        result = calibrate(generator, cases, args.steps, frames, args.target, args.degree)
    command = " ".join(["python -m wanray.tea_cache", *(sys.argv[1:] if argv is None else argv)])
    lowest, at = lowest_value(result["coefficients"], generator.pipe, spec.default_sigma_shift)
    sha = weights_sha256(root)
    if points and points.get("weights_sha256") != sha:
        print(f"warning: the points were recorded on other weights ({points.get('weights_sha256')}) than "
              f"{model}'s ({sha})")
    result = {**result, "model": spec.name, "weights_sha256": sha, "command": command,
              "lowest_value": {"value": lowest, "steps": at, "step_counts": list(CHECKED_STEP_COUNTS)}}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['points']} points, input change {result['input_range'][0]:.4g}..{result['input_range'][1]:.4g}, "
          f"degree {result['degree']}, R^2 {result['r2']:.4f}")
    print(f"lowest value over runs of {CHECKED_STEP_COUNTS[0]}-{CHECKED_STEP_COUNTS[-1]} steps: {lowest:.4g} "
          f"({at} steps)" + (" -- NOT POSITIVE: those steps would count as no change; try another --degree"
                             if lowest <= 0 else ""))
    print(f"weights_sha256={sha!r}")
    print(f"coefficients=({', '.join(f'{c:.8e}' for c in result['coefficients'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

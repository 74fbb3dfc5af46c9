"""The one checkpoint format of wanray's training loops: weights, optimizer, schedule and where the run is.

A checkpoint is a folder:
- ``trainable.safetensors``: the trained tensors by name (the float32 masters, or bf16 for ``portable``);
- ``optimizer.pt``: the torch optimizer's state dict (loaded with ``weights_only=True``);
- ``scheduler.json``: the LR scheduler's state, when the loop has one;
- ``trainer_state.json``: step, data position, history (``wanray.training.state.TrainerState``).

The Ray Train loop's DDP engine and the embedded model's VAE stages write and read it through the two functions
below, so a run resumes the same way wherever it was interrupted.

``precision="portable"`` makes the folder small enough to carry between machines (a GPU host reached through a
64 MiB pipe): weights in bf16, Adam's moments in float8 with one scale per tensor (``exp_avg`` as e4m3; ``exp_avg_sq``
as its square root in e5m2, whose 2^31 range keeps every denominator non-zero). That is 4 bytes per trained value
instead of 12; a resumed run continues from weights rounded to bf16 and moments within ~6% (first) and ~12% (second)
of their values. ``"exact"`` (the default) keeps float32, and a resumed run replays the uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["exact", "portable"]
PRECISIONS = ("exact", "portable")
WEIGHTS, OPTIMIZER, SCHEDULER = "trainable.safetensors", "optimizer.pt", "scheduler.json"
# (state key, float8 dtype, stored as the square root) for Adam's moments in a portable checkpoint
_COMPACT = {"exp_avg": (torch.float8_e4m3fn, False), "exp_avg_sq": (torch.float8_e5m2, True)}


def save_checkpoint(directory: Path, weights: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    scheduler=None, precision: Precision = "exact") -> None:
    """Write ``weights`` (name -> tensor), the optimizer's and the scheduler's state into ``directory``."""
    from safetensors.torch import save_file

    if precision not in PRECISIONS:
        raise ValueError(f"checkpoint precision must be one of {PRECISIONS}, got {precision!r}")
    directory.mkdir(parents=True, exist_ok=True)
    dtype = torch.bfloat16 if precision == "portable" else torch.float32
    save_file({n: t.detach().to("cpu", dtype).contiguous() for n, t in weights.items()}, str(directory / WEIGHTS))
    state = optimizer.state_dict()
    if precision == "portable":
        state = {**state, "state": {i: _compact(s) for i, s in state["state"].items()}}
    torch.save(state, directory / OPTIMIZER)
    if scheduler is not None:
        (directory / SCHEDULER).write_text(json.dumps(scheduler.state_dict()))


def load_checkpoint(directory: Path, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, fresh_moments: bool = False) -> dict[str, torch.Tensor]:
    """The checkpoint's weights (float32, on the CPU); restores the optimizer and scheduler given.
    ``fresh_moments``: a checkpoint saved without the optimizer's state resumes with ``optimizer`` as it is (fresh
    Adam moments, whose bias correction restarts), where it would otherwise be refused."""
    from safetensors.torch import load_file

    weights = {n: t.float() for n, t in load_file(str(directory / WEIGHTS)).items()}
    has_moments = (directory / OPTIMIZER).is_file()
    if optimizer is not None and (has_moments or not fresh_moments):
        if not has_moments:  # e.g. a one-call GPU host run's returned checkpoint
            raise FileNotFoundError(f"{directory} holds weights but no optimizer state ({OPTIMIZER}): it cannot be "
                                    "resumed as it was; resume it with fresh moments (--fresh-moments), ship its "
                                    "weights, or start a new run from them")
        state = torch.load(directory / OPTIMIZER, weights_only=True, map_location="cpu")
        optimizer.load_state_dict({**state, "state": {i: _expand(s) for i, s in state["state"].items()}})
    if scheduler is not None:
        scheduler.load_state_dict(json.loads((directory / SCHEDULER).read_text()))
    return weights


def _compact(state: dict) -> dict:
    out = dict(state)
    for key, (dtype, root) in _COMPACT.items():
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        value = value.detach().float().cpu()
        value = value.sqrt() if root else value
        scale = value.abs().max().clamp(min=torch.finfo(torch.float32).tiny) / torch.finfo(dtype).max
        scaled = value / scale
        if root:  # a non-zero second moment stays non-zero: it divides the update
            scaled = torch.where(scaled > 0, scaled.clamp(min=2.0 ** -16), scaled)  # e5m2's smallest subnormal
        out[key] = scaled.to(dtype)
        out[f"{key}.scale"] = scale
    return out


def _expand(state: dict) -> dict:
    out = dict(state)
    for key, (_, root) in _COMPACT.items():
        scale = out.pop(f"{key}.scale", None)
        if scale is not None:
            value = out[key].float() * scale
            out[key] = value.square() if root else value
    return out


def replace_atomically(directory: Path, write) -> None:
    """``write(folder)`` into a new folder, then renamed to ``directory``: a process killed mid-save (a GPU host's call
    running out of time) leaves the last whole checkpoint, never half of one."""
    import shutil

    partial, old = directory.with_name(f"{directory.name}.partial"), directory.with_name(f"{directory.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    if directory.exists():
        directory.rename(old)
    partial.rename(directory)
    shutil.rmtree(old, ignore_errors=True)

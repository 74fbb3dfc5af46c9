"""The embedded model's DiT stage with no files, codec or Ray: render a set from its seed, encode it once, train.

    python -m wanray.training.embedded --stage dit --entries 1000 --data-seed 11 --out OUT --device cuda \\
        --frames 77 --batch 32 --lr 2e-4 --steps 6000 --checkpoint-precision portable --max-seconds 400

What a bare GPU host can run at once (``scripts/gpu-host-train-embedded.sh`` with ``STAGE=dit``): the entries are
rendered in memory (photo, anime video, pose video: ``wanray.datasets.synth.render_media``), encoded by the model's
frozen encoders exactly as the latent cache is (``wanray.encoding.encode_samples``), and kept on the device. The
step is the Ray Train loop's (``wanray.training.step.micro_step`` through the same ``DDPEngine``, in one process),
and so is the checkpoint (``wanray.training.checkpoint``). A batch is a function of (seed, step) alone, and the
noise is too (``flow.step_generator``), so a run resumed from an exact checkpoint replays the uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from wanray.encoding import TrainingSample

STAGE_DIR = "dit_stage"
FPS = 15.0


def _render(seed: int, index: int, size: int, frames: int) -> TrainingSample:
    """Entry ``index`` of ``wanray datasets synth --seed SEED``'s set as a training sample (the pose video is the
    VACE video, as ``wanray demo`` gives it), rendered in memory."""
    from wanray.datasets.synth import SynthConfig, plan_entry, render_media

    plan = plan_entry(SynthConfig(n=index + 1, out=Path("."), seed=seed, height=size, width=size, frames=frames),
                      index)
    media = render_media(plan, frames, FPS)
    return TrainingSample(video=media.video, prompt=plan.prompt, input_image=media.photo, vace_video=media.pose)


def render_samples(seed: int, entries: int, size: int, frames: int) -> list[TrainingSample]:
    """The first ``entries`` entries of the synthetic set of ``seed``, rendered by a process pool."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: a forked copy of a process holding torch's threads can die at once
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1), mp_context=context) as pool:
        n = range(entries)
        return list(pool.map(_render, [seed] * entries, n, [size] * entries, [frames] * entries, chunksize=4))


def encoders_digest(pipe) -> str:
    """16 hex digits naming the frozen encoders' weights (VAE, umT5, CLIP): encoded rows kept on disk are reused
    only by the same encoders."""
    digest = hashlib.sha256()
    for module in (pipe.vae.model.encoder, pipe.vae.model.conv1, pipe.text_encoder, pipe.image_encoder):
        if module is None:
            continue
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def encoded_rows(pipe, *, seed: int, entries: int, size: int, frames: int, batch: int,
                 keep: Path | None) -> dict[str, torch.Tensor]:
    """The set's DiT inputs, each [N, ...] on the CPU (``input_latents``, ``context``, ``y``, ``clip_feature``,
    ``vace_context``: ``wanray.encoding``). ``keep``: a folder where they are kept as one safetensors file, so the
    next call on a warm machine loads them instead of rendering and encoding again."""
    from safetensors.torch import load_file, save_file

    from wanray.encoding import encode_samples

    name = f"rows-seed{seed}-n{entries}-{size}px-{frames}f-{encoders_digest(pipe)}.safetensors"
    kept = keep / name if keep is not None else None
    if kept is not None and kept.is_file():
        print(f"dit: {entries} encoded entries from {kept}", flush=True)
        return load_file(str(kept))
    started = time.perf_counter()
    samples = render_samples(seed, entries, size, frames)
    rendered = time.perf_counter()
    each = []
    for i in range(0, len(samples), batch):  # a batch's VAE encodes run as one call: the small VAE is launch-bound
        each += [{k: v.detach().cpu() for k, v in t.items()} for t in encode_samples(pipe, samples[i : i + batch])]
    rows = {k: torch.cat([t[k] for t in each]) for k in each[0]}  # each [N, ...]
    print(f"dit: {entries} entries (seed {seed}, {size}x{size}, {frames} frames) rendered in "
          f"{rendered - started:.1f} s, encoded in {time.perf_counter() - rendered:.1f} s", flush=True)
    if kept is not None:
        partial = kept.with_name(f".{name}.partial")
        save_file({k: v.contiguous() for k, v in rows.items()}, str(partial))
        partial.replace(kept)
    return rows


class RowSampler:
    """Batches of rows as a function of (seed, step): the rows are read in passes, each a permutation seeded by
    (seed, pass), and step ``s`` takes the ``batch`` rows from position ``s * batch`` on."""

    def __init__(self, count: int, *, batch: int, seed: int):
        self.count, self.batch, self.seed = count, batch, seed
        self._orders: dict[int, torch.Tensor] = {}

    def _order(self, pass_index: int) -> torch.Tensor:
        from wanray.training.data import pass_permutation

        if pass_index not in self._orders:  # this pass's only
            self._orders = {pass_index: pass_permutation(self.count, self.seed, pass_index)}  # [count]
        return self._orders[pass_index]

    def indices_at(self, step: int) -> list[int]:
        positions = range(step * self.batch, (step + 1) * self.batch)
        return [int(self._order(p // self.count)[p % self.count]) for p in positions]

    def position(self, step: int) -> tuple[int, int]:
        """(pass, rows of that pass done) after ``step`` steps: the trainer state's data position."""
        return divmod(step * self.batch, self.count)


def train_dit_in_memory(*, out: Path, device: torch.device, model_dir: Path, entries: int, data_seed: int,
                        steps: int, lr: float, batch: int, size: int, frames: int, save_every: int,
                        max_seconds: float | None, until: int | None, seed: int, precision: str,
                        checkpoint_only: bool, settings: tuple[str, ...] = ()) -> Path | None:
    """A full fine-tune of ``model_dir``'s DiT and VACE branch on ``entries`` rendered entries of ``data_seed``.

    The learning rate warms up, then follows a cosine to 0 at ``steps``; ``until`` (or ``max_seconds``) ends this
    process earlier, on the same curve. The checkpoint (``<out>/dit_stage/checkpoint``) holds the trained tensors,
    the optimizer and schedule, and the step (the data position). Without ``checkpoint_only`` the model, ``model_dir``
    with the trained DiT, is written to ``<out>/model``.
    """
    from wanray.training.checkpoint import replace_atomically
    from wanray.training.config import apply_overrides
    from wanray.training.engine import DDPEngine
    from wanray.training.flow import FlowMatching
    from wanray.training.model import build_training_model
    from wanray.training.presets import embedded_full
    from wanray.training.state import STATE_FILE, TrainerState
    from wanray.training.step import micro_step

    cuda = device.type == "cuda"
    config = apply_overrides(embedded_full(), [
        f"model={Path(model_dir).resolve()}", "name=dit_stage", f"seed={seed}", f"max_steps={steps}",
        f"optim.lr={lr}", "optim.schedule=cosine", f"optim.warmup_steps={min(100, max(1, steps // 20))}",
        f"data.height={size}", f"data.width={size}", f"data.frames={frames}", f"data.batch_size={batch}",
        "validation.every_steps=0", "strategy.gradient_checkpointing=false",
        f"strategy.precision={'tf32' if cuda else 'fp32'}", *settings,
    ])
    torch.manual_seed(seed)
    model = build_training_model(config, device, latents_cached=True)
    engine = DDPEngine(model.module, config.optim, steps, model.dtype, device, prepare=False, precision=precision)
    flow = FlowMatching(config.expert, config.expert_boundary)
    ckpt_dir = out / STAGE_DIR / "checkpoint"
    state = TrainerState()
    resuming = (ckpt_dir / STATE_FILE).is_file()
    if resuming:
        engine.load(ckpt_dir)
        state = TrainerState.load(ckpt_dir)
        print(f"dit: resumed at step {state.step} from {ckpt_dir}", flush=True)

    def save() -> None:
        def write(folder: Path) -> None:
            engine.save(folder)
            state.save(folder)

        replace_atomically(ckpt_dir, write)

    card = torch.cuda.get_device_name(device) if cuda else "cpu"
    stop = min(steps, until if until is not None else steps)
    deadline = time.perf_counter() + max_seconds if max_seconds is not None else math.inf
    rows = sampler = None  # rendering and encoding take a while: not when resuming only to write the model
    window, started = [], time.perf_counter()
    while state.step < stop:
        if time.perf_counter() > deadline:
            print(f"dit: --max-seconds {max_seconds:g} reached at step {state.step}", flush=True)
            break
        if rows is None:
            pipe = model.generator.pipe
            with model.whole_pipeline():  # the encoders back on the device while encoding
                encoded = encoded_rows(pipe, seed=data_seed, entries=entries, size=size, frames=frames,
                                       batch=64 if cuda else 4, keep=out)
            rows = {k: v.to(device, model.dtype) for k, v in encoded.items()}  # each [N, ...]
            sampler = RowSampler(entries, batch=batch, seed=seed)
            nbytes = sum(t.numel() * t.element_size() for t in rows.values())
            print(f"dit: {entries} rows, {nbytes / 2**30:.2f} GiB on {device}; {steps} steps of {batch}, "
                  f"lr {lr:g} cosine", flush=True)
            window, started = [], time.perf_counter()
        index = torch.tensor(sampler.indices_at(state.step), device=device)
        inputs = {k: v.index_select(0, index) for k, v in rows.items()}  # each [B, ...]
        loss = micro_step(engine, flow, inputs, seed=seed, step=state.step, rank=0, micro=0, grad_accum=1,
                          dtype=model.dtype, boundary=True, loss_divisor=1)
        state.step += 1
        state.samples_seen += batch
        state.pass_index, state.rows_done = sampler.position(state.step)
        window.append(loss)
        if state.step % 10 == 0 or state.step == stop:
            rate = len(window) * batch / (time.perf_counter() - started)
            state.history.append({"step": state.step, "loss": float(np.mean(window)), "samples_per_s": rate,
                                  "lr": engine.lr, "card": card})
            print(f"dit: step {state.step}/{steps}  loss {np.mean(window):.4f}  {rate:.1f} samples/s  "
                  f"lr {engine.lr:.2e}  {card}", flush=True)
            window, started = [], time.perf_counter()
        if state.step % save_every == 0:
            save()
    if state.step % save_every or not resuming:  # steps since the last save, or a new run's first checkpoint
        save()
    if checkpoint_only:
        print(f"dit: checkpoint at step {state.step} in {ckpt_dir}; no model written (--checkpoint-only)", flush=True)
        return None
    return write_trained_model(model_dir, ckpt_dir, out / "model")


def dit_file_state(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DiT-stage checkpoint's tensors (``dit.<key>``, ``vace.<key>``: the training module's names) by the DiT file's
    names (the DiT's own keys and VACE's ``vace_*`` keys side by side: ``model_writer.dit_state_dict``)."""
    out = {}
    for name, tensor in weights.items():
        owner, _, key = name.partition(".")
        if owner not in ("dit", "vace"):
            raise ValueError(f"{name!r} is not a DiT-stage tensor (dit.* or vace.*): is this a VAE stage's checkpoint?")
        out[key] = tensor
    return out


def write_trained_model(model_dir: Path, ckpt_dir: Path, out: Path, dtype: torch.dtype = torch.float32) -> Path:
    """``model_dir`` with the checkpoint's DiT, as a new model folder ``out``, written as the Ray Train loop exports a
    full fine-tune (``export.export_full_model``: the other files linked or copied)."""
    from wanray.specs import spec_for_dir
    from wanray.training.checkpoint import load_checkpoint
    from wanray.training.export import export_full_model

    state = dit_file_state(load_checkpoint(ckpt_dir))
    export_full_model(out, source_dir=Path(model_dir), spec=spec_for_dir(model_dir), trained=state, expert=None,
                      dtype=dtype, shards=1)
    print(f"dit: wrote {out}", flush=True)
    return out

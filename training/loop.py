"""``train_loop_per_worker``: the one loop for LoRA and full fine-tuning, run by every Ray Train worker.

Per micro-step: a row -> DiT inputs (latent cache or encoders) -> noise and timestep from the step's
own seeded generator -> DiffSynth's model function -> weighted MSE -> backward; the optimizer steps
at the end of each accumulation window. Every ``log_every`` steps all ranks report metrics; every
``checkpoint.every_steps`` (and at the end) all ranks save and report a checkpoint; every
``validation.every_steps`` validation generates and scores a few held-out entries.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from wanray.training.config import TrainConfig
from wanray.training.state import RunPlan, TrainerState

log = logging.getLogger("wanray.training")


def _worker_environment(device_is_cpu: bool) -> None:
    # Printed progress goes to the worker's stdout, which Ray shows in the dashboard and job logs.
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("PIL", "urllib3", "filelock", "modelscope", "DeepSpeed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "wanray" / "torch_extensions"))
    if device_is_cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


class _Dist:
    """Rank facts and the few collectives the loop needs (no-ops on one worker)."""

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world = ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.experiment = ctx.get_experiment_name()

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, values: list[float], device: torch.device) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
            t /= self.world
        return t.tolist()


def _rows_of_pass(shard, config: TrainConfig, pass_index: int):
    """The rows of one pass over this worker's shard, locally shuffled with a per-pass seed."""
    if config.data.shuffle_buffer:
        batches = shard.iter_batches(
            batch_size=1, batch_format="numpy", local_shuffle_buffer_size=config.data.shuffle_buffer,
            local_shuffle_seed=config.seed * 100_003 + pass_index,
        )
        for batch in batches:
            yield {k: v[0] for k, v in batch.items()}
    else:
        yield from shard.iter_rows()


def _micro_batches(rows, batch_size: int, start: int, stop: int):
    """``(rows of the pass consumed, [batch_size rows])`` for the rows ``[start, stop)`` of a pass."""
    batch = []
    for i, row in enumerate(rows):
        if i < start:
            continue  # trained on before the checkpoint this run resumed from
        if i >= stop:
            return
        batch.append(row)
        if len(batch) == batch_size:
            yield i + 1, batch
            batch = []


def _staging_dir(dist: _Dist, step: int) -> Path:
    """A directory every rank of this node agrees on (DeepSpeed writes each rank's files into one dir)."""
    return Path(tempfile.gettempdir()) / "wanray-train" / dist.experiment / f"step_{step:08d}"


def _report(dist: _Dist, engine, config: TrainConfig, state: TrainerState, metrics: dict, checkpoint: bool) -> None:
    import ray.train

    if not checkpoint:
        ray.train.report(metrics)
        return
    directory = _staging_dir(dist, state.step)
    if dist.local_rank == 0:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    dist.barrier()
    engine.save(directory)
    if dist.rank == 0:
        state.save(directory)
        (directory / "train_config.json").write_text(config.to_json() + "\n")
    dist.barrier()
    uploads = dist.local_rank == 0 if engine.files_on_every_node else dist.rank == 0
    ckpt = ray.train.Checkpoint.from_directory(str(directory)) if uploads else None
    ray.train.report(metrics, checkpoint=ckpt)
    dist.barrier()
    if dist.local_rank == 0:
        shutil.rmtree(directory, ignore_errors=True)


def _progress(dist: _Dist, message: str, every_rank: bool = False) -> None:
    """A progress line in the worker's stdout: Ray forwards it to the driver, the job log and the dashboard."""
    if every_rank or dist.rank == 0:
        print(f"[wanray.training rank {dist.rank}] {message}", flush=True)


def _maybe_kill_self(config: TrainConfig, dist: _Dist, step: int) -> None:
    fault = config.fault_injection
    if fault is None or fault.rank != dist.rank or fault.step != step:
        return
    marker = Path(fault.marker)
    if marker.exists():
        return
    marker.write_text(f"rank {dist.rank} killed itself at step {step}\n")
    log.warning("fault injection: rank %d sends itself SIGKILL at step %d", dist.rank, step)
    os.kill(os.getpid(), signal.SIGKILL)


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    device = ray.train.torch.get_device()
    _worker_environment(device.type == "cpu")
    if "cpu_conv3d" in loop_config:  # the driver's choice, not this process's own timing (wanray.accel)
        from wanray.accel import CPU_CONV3D_ENV, conv2d_beats_conv3d_on_this_cpu

        os.environ[CPU_CONV3D_ENV] = loop_config["cpu_conv3d"]
        conv2d_beats_conv3d_on_this_cpu.cache_clear()
    from wanray.training.data import ResidentRows, RowEncoder, row_to_sample
    from wanray.training.engine import build_engine
    from wanray.training.flow import FlowMatching
    from wanray.training.model import build_training_model
    from wanray.training.step import micro_step

    config = TrainConfig.from_dict(loop_config["config"])
    plan = RunPlan(**loop_config["plan"])
    dist = _Dist()
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(config.scaling.cpus_per_worker)))
    model = build_training_model(config, device, latents_cached=plan.source == "cache")
    engine = build_engine(model.module, config.strategy, config.optim, plan.total_steps, model.dtype, device,
                          micro_batch=config.data.batch_size)
    flow = FlowMatching(config.expert, config.expert_boundary)
    encode = RowEncoder(model.generator.pipe, plan.source, config.data.extra_inputs, device, model.dtype)

    state = TrainerState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            engine.load(Path(directory))
            state = TrainerState.load(Path(directory))
        _progress(dist, f"resumed at step {state.step} (pass {state.pass_index}, row {state.rows_done})", True)

    run_dir = config.run_dir
    writer = None
    if dist.rank == 0:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=state.step + 1 if state.step else None)
    validator = None
    if config.validation.every_steps and (dist.rank == 0 or engine.gathers_parameters):
        from wanray.training.validation import Validator

        try:
            rows = list(ray.train.get_dataset_shard("validation").iter_rows())
        except KeyError:  # the driver found no validation entries
            rows = []
        samples = [row_to_sample(r, config.data.extra_inputs) for r in rows]
        if samples:
            validator = Validator(config.validation, model.generator, samples, run_dir / "validation", writer,
                                  write_files=dist.rank == 0)
        elif dist.rank == 0:
            log.warning("validation asked for, but split %r has no entries: skipped", config.data.validation_split)
    has_validation = dist.mean([1.0 if validator else 0.0], device)[0] > 0

    grad_accum, batch_size = config.optim.grad_accum, config.data.batch_size
    rows_per_pass = plan.steps_per_pass * grad_accum * batch_size
    shard = ray.train.get_dataset_shard("train")
    if config.data.in_memory:  # the rows' tensors on the device; a pass is a list of indices, a batch indexes them
        encode = ResidentRows(shard, device, model.dtype, config.seed)
        rows_of_pass = encode.pass_order
        _progress(dist, f"data.in_memory: {encode.count} rows, {encode.nbytes / 2**30:.2f} GiB on {device}", True)
    else:
        def rows_of_pass(pass_index):
            return _rows_of_pass(shard, config, pass_index)
    window_loss, window_n, window_started = 0.0, 0, time.perf_counter()
    _progress(dist, f"{dist.world} worker(s) on {device}: {plan.total_steps} steps ({plan.steps_per_pass} per pass, "
                    f"{plan.rows_per_worker} rows per worker per pass), {config.method}, inputs from {plan.source}")

    # the time budget spans restarts and reruns: a resumed run counts the time its checkpoint says it trained
    total_steps, started = plan.total_steps, time.perf_counter() - state.train_seconds
    if config.max_time_s and state.train_seconds >= config.max_time_s:
        _progress(dist, f"max_time_s={config.max_time_s:g} was spent by step {state.step} ({state.train_seconds:.0f} s "
                        "trained): nothing left to train")
        total_steps = min(total_steps, state.step)
    while state.step < total_steps:
        rows = rows_of_pass(state.pass_index)
        for rows_done, batch in _micro_batches(rows, batch_size, state.rows_done, rows_per_pass):
            if state.step >= total_steps:
                break
            micro = (rows_done // batch_size - 1) % grad_accum
            boundary = micro == grad_accum - 1
            loss = micro_step(engine, flow, encode(batch), seed=config.seed, step=state.step, rank=dist.rank,
                              micro=micro, grad_accum=grad_accum, dtype=model.dtype, boundary=boundary,
                              loss_divisor=grad_accum if config.strategy.engine == "ddp" else 1)
            window_loss += loss
            window_n += 1
            state.rows_done = rows_done
            if not boundary:
                continue
            state.step += 1
            state.samples_seen += dist.world * grad_accum * batch_size
            if state.rows_done >= rows_per_pass:
                state.pass_index, state.rows_done = state.pass_index + 1, 0
            _maybe_kill_self(config, dist, state.step)

            if config.max_time_s and state.step % config.log_every == 0:  # every rank checks at the same steps
                out_of_time = time.perf_counter() - started > config.max_time_s
                if dist.mean([float(out_of_time)], device)[0] > 0:
                    _progress(dist, f"max_time_s={config.max_time_s:g} reached at step {state.step}: finishing")
                    total_steps = state.step
            last = state.step >= total_steps
            save = last or state.step % config.checkpoint.every_steps == 0
            validate = has_validation and (last or state.step % config.validation.every_steps == 0)
            if not (save or validate or state.step % config.log_every == 0):
                continue
            elapsed = time.perf_counter() - window_started
            loss_mean, samples_per_s = dist.mean([window_loss / max(window_n, 1), window_n / elapsed], device)
            metrics = {
                "step": state.step,
                "epoch": state.pass_index // config.data.repeat,
                "loss": loss_mean,
                "lr": engine.lr,
                "samples_per_s": samples_per_s * dist.world * batch_size,
                "samples_seen": state.samples_seen,
            }
            if validate:
                with model.whole_pipeline():
                    scores = validator.run(state.step, model.module) if validator else {}
                metrics.update(scores)
            state.history.append(metrics)
            state.train_seconds = time.perf_counter() - started
            if writer is not None:
                for key in ("loss", "lr", "samples_per_s"):
                    writer.add_scalar(f"train/{key}", metrics[key], state.step)
                writer.flush()
            _progress(dist, f"step {state.step}/{total_steps}  loss {loss_mean:.4f}  lr {metrics['lr']:.2e}  "
                            f"{metrics['samples_per_s']:.2f} samples/s" + (" (checkpoint)" if save else "")
                            + "".join(f"  {k} {metrics[k]:.3f}" for k in ("val_psnr", "val_ssim") if k in metrics))
            _report(dist, engine, config, state, metrics, checkpoint=save)
            window_loss, window_n, window_started = 0.0, 0, time.perf_counter()
        else:
            # the shard ran out before rows_per_pass (cannot happen with an equal split; kept safe)
            if state.rows_done:
                state.pass_index, state.rows_done = state.pass_index + 1, 0

    _export(config, model, engine, dist)
    if writer is not None:
        writer.close()


def _export(config: TrainConfig, model, engine, dist: _Dist) -> None:
    """Rank 0 writes the LoRA file or the full model directory into ``<run>/export``."""
    from wanray.training import export

    dtype = torch.bfloat16 if config.export_dtype == "bfloat16" else torch.float32
    module = model.module
    out = config.run_dir / "export"
    if config.lora is not None:
        params = [p for n, p in module.named_parameters() if ".lora_" in n]
        with engine.full_parameters(params):
            if dist.rank == 0:
                named = {n: p for n, p in module.named_parameters() if ".lora_" in n}
                state = export.lora_export_state(named, config.lora.scale, dtype)
                path = export.write_lora(out / export.lora_file_name(config.expert), state, {
                    "wanray.base_model": config.model, "wanray.rank": config.lora.rank,
                    "wanray.targets": ",".join(config.lora.target_modules), "wanray.expert": config.expert or "",
                })
                _progress(dist, f"exported LoRA ({len(state)} tensors) to {path}")
    else:
        from wanray.generation import resolve_model
        from wanray.model_writer import dit_state_dict

        params = list(module.parameters())
        with engine.full_parameters(params):
            if dist.rank == 0:
                trained = dit_state_dict(module.dit, module.vace if module.vace is not None else _frozen_vace(model))
                trained = {k: v.detach().cpu() for k, v in trained.items()}
                source_dir, spec = resolve_model(config.model)
                path = export.export_full_model(out / "model", source_dir=source_dir, spec=spec, trained=trained,
                                                expert=config.expert, dtype=dtype, shards=_shards_for(trained, dtype))
                _progress(dist, f"exported the full fine-tune to {path}")
    dist.barrier()


def _frozen_vace(model):
    """A full fine-tune without VACE inputs still writes the (untouched) VACE weights with the DiT."""
    pipe = model.generator.pipe
    return getattr(pipe, "vace", None)


def _shards_for(state: dict, dtype: torch.dtype) -> int:
    total = sum(v.numel() * dtype.itemsize for v in state.values())  # bytes as exported
    return max(1, -(-total // (5 * 1024**3)))  # ~5 GB shards like the published 14B checkpoints

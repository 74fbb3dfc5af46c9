"""The driver side of a run: datasets, plan, and Ray Train's ``TorchTrainer`` built from a ``TrainConfig``.

    from wanray.training.presets import embedded_lora_smoke
    from wanray.training.trainer import run
    result = run(embedded_lora_smoke())

Resuming is Ray Train's: rerun with the same ``name`` and ``output_dir`` and the run continues from
its latest checkpoint (weights, optimizer, LR schedule, step and data position).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from wanray.training.config import TrainConfig
from wanray.training.state import RunPlan, make_plan

log = logging.getLogger(__name__)


def resolve_dataset(config: TrainConfig) -> TrainConfig:
    """``data.dataset = "synthetic"``: make the synthetic set in the run folder once, then use that folder."""
    if config.data.dataset != "synthetic":
        path = Path(config.data.dataset).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"data.dataset {str(path)!r} is not a directory; make one with `wanray datasets ...` or set "
                f"--set data.dataset=DIR"
            )
        return replace(config, data=replace(config.data, dataset=str(path.resolve())))
    from wanray.training.synthetic import ensure_synthetic_dataset

    folder = ensure_synthetic_dataset(config.run_dir / "synthetic_dataset", config.data)
    return replace(config, data=replace(config.data, dataset=str(folder)))


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """Paths as the driver sees them: Ray Train runs each worker in a session folder of its own, where a relative
    ``outputs/train`` would put the export, logs and validation clips under /tmp/ray/session_*/artifacts."""
    from wanray.specs import model_for_other_processes

    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().resolve()) if path else path

    return replace(config, output_dir=absolute(config.output_dir), model=model_for_other_processes(config.model),
                   data=replace(config.data, latent_cache=absolute(config.data.latent_cache)))


def prepare(config: TrainConfig) -> tuple[TrainConfig, dict, RunPlan]:
    """Resolve the dataset, build the Ray Datasets and work out steps (driver side, before any worker)."""
    from wanray.training.data import build_training_data

    config = absolute_paths(resolve_dataset(config))
    data = build_training_data(config)
    plan = make_plan(
        rows=data.rows, num_workers=config.scaling.num_workers, grad_accum=config.optim.grad_accum,
        batch_size=config.data.batch_size, repeat=config.data.repeat, epochs=config.epochs, max_steps=config.max_steps, source=data.source,
        source_reason=data.reason,
    )
    log.info("plan: %d training rows, %d steps (%d per pass x %d passes%s), inputs from %s (%s)", plan.rows,
             plan.total_steps, plan.steps_per_pass, config.data.repeat * config.epochs,
             f", capped by max_steps={config.max_steps}" if config.max_steps else "", plan.source, plan.source_reason)
    if plan.rows_unused_per_pass and not config.data.shuffle_buffer:
        log.warning("plan: %d of the %d rows fall outside whole steps in every pass, and with data.shuffle_buffer=0 "
                    "(file order) they are the same rows each time: never trained. Set data.shuffle_buffer (e.g. 64), "
                    "or make the row count a multiple of workers x grad_accum x batch_size",
                    plan.rows_unused_per_pass, plan.rows)
    return config, data.datasets, plan


def build_trainer(config: TrainConfig, datasets: dict, plan: RunPlan):
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchConfig, TorchTrainer

    from wanray.training.loop import train_loop_per_worker

    s = config.scaling
    resources = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    loop_config = {"config": config.to_dict(), "plan": plan.to_dict()}
    if not s.use_gpu:  # every worker, a restarted one too, rounds the VAE's convolutions as the driver chose
        from wanray.accel import conv2d_beats_conv3d_on_this_cpu

        loop_config["cpu_conv3d"] = "conv2d" if conv2d_beats_conv3d_on_this_cpu() else "conv3d"
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,
                                               resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=config.name,
            storage_path=str(Path(config.output_dir).expanduser().resolve()),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
            failure_config=ray.train.FailureConfig(max_failures=config.checkpoint.max_failures),
        ),
        datasets=datasets,
        # Each worker reads its own part of "train"; "validation" is read whole. preserve_order makes the
        # split of rows over workers deterministic, so a resumed run sees the rows it would have seen.
        dataset_config=ray.train.DataConfig(
            datasets_to_split=["train"], execution_options=ExecutionOptions(preserve_order=True)
        ),
    )


def run(config: TrainConfig):
    """Train (or resume) the run; returns Ray Train's ``Result``. Needs a Ray cluster (or starts a local one)."""
    import ray

    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS / the job's cluster when submitted with `ray job submit`
    ray.data.DataContext.get_current().enable_progress_bars = False  # one line per step instead, from the loop
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config, datasets, plan = prepare(config)
    (config.run_dir / "train_config.json").write_text(config.to_json() + "\n")
    trainer = build_trainer(config, datasets, plan)
    result = trainer.fit()
    log.info("run %s finished: %s", config.name, export_path(config))
    return result


def export_path(config: TrainConfig) -> Path:
    from wanray.training.export import lora_file_name

    out = config.run_dir / "export"
    return out / lora_file_name(config.expert) if config.lora is not None else out / "model"

"""Ray Train runs of the embedded model on CPU: checkpoints, export, a killed worker, DeepSpeed ZeRO."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wanray.training.config import FaultInjection, apply_overrides
from wanray.training.presets import embedded_lora_smoke
from wanray.training.state import TrainerState
from wanray.training.trainer import export_path, run

TWO_WORKERS = ["scaling.num_workers=2", "scaling.cpus_per_worker=1", "data.limit=4", "epochs=3", "max_steps=4",
               "checkpoint.every_steps=2", "checkpoint.keep=1", "checkpoint.max_failures=1"]


def _config(dataset: Path, out: Path, name: str, extra=()):
    return apply_overrides(embedded_lora_smoke(), [f"data.dataset={dataset}", f"output_dir={out}", f"name={name}",
                                                    *TWO_WORKERS, *extra])


@pytest.fixture(scope="module")
def uninterrupted(tiny_dance_set, tmp_path_factory):
    config = _config(tiny_dance_set, tmp_path_factory.mktemp("runs"), "uninterrupted",
                     ["validation.every_steps=2", "validation.samples=1", "validation.steps=2"])
    return config, run(config)


def test_two_workers_train_report_checkpoint_and_export(uninterrupted):
    config, result = uninterrupted
    assert result.error is None
    with result.checkpoint.as_directory() as d:
        state = TrainerState.load(Path(d))
        assert (Path(d) / "trainable.safetensors").is_file() and (Path(d) / "optimizer.pt").is_file()
    assert state.step == 4 and state.samples_seen == 8  # 2 workers x 1 row x 4 steps
    assert [m["step"] for m in state.history] == [1, 2, 3, 4]
    assert all(m["loss"] > 0 for m in state.history)
    kept = sorted(p.name for p in config.run_dir.glob("checkpoint_*") if p.is_dir())
    assert len(kept) == 1  # keep-N: the step-2 checkpoint was removed once step 4's was written
    lora = load_file(str(export_path(config)))
    assert lora and all(k.startswith("diffusion_model.blocks.") for k in lora)
    assert any(float(v.abs().max()) > 0 for k, v in lora.items() if ".lora_B." in k)  # trained away from zero
    assert list((config.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_validation_scores_and_videos_every_n_steps(uninterrupted):
    config, result = uninterrupted
    with result.checkpoint.as_directory() as d:
        history = TrainerState.load(Path(d)).history
    scored = {m["step"]: m for m in history if "val_psnr" in m}
    assert sorted(scored) == [2, 4]
    for m in scored.values():
        assert 0 < m["val_psnr"] <= 100 and -1 <= m["val_ssim"] <= 1
    for step in (2, 4):
        folder = config.run_dir / "validation" / f"step_{step:06d}"
        assert (folder / "00_generated.mp4").stat().st_size > 0 and (folder / "00_reference.mp4").is_file()


def test_killed_worker_resumes_from_checkpoint_and_matches_the_uninterrupted_run(uninterrupted, tmp_path):
    reference_config, _ = uninterrupted
    config = _config(reference_config.data.dataset, tmp_path, "killed")  # validation off: weights do not depend on it
    marker = tmp_path / "killed.marker"
    from dataclasses import replace

    config = replace(config, fault_injection=FaultInjection(rank=1, step=3, marker=str(marker)))
    result = run(config)
    assert result.error is None and marker.is_file()  # rank 1 did die (SIGKILL), and the run still finished
    with result.checkpoint.as_directory() as d:
        assert TrainerState.load(Path(d)).step == 4
    ours, reference = load_file(str(export_path(config))), load_file(str(export_path(reference_config)))
    assert ours.keys() == reference.keys()
    # Same seed, same rows per step (ordered split), same per-step noise: the resumed run replays the
    # uninterrupted one. float32 on CPU with the same thread count is reproducible; 1e-6 only allows for
    # summation-order differences, far below one training step's change (checked below).
    worst = max(float((ours[k] - reference[k]).abs().max()) for k in ours)
    assert worst <= 1e-6, worst
    change = max(float(v.abs().max()) for k, v in reference.items() if ".lora_B." in k)
    assert change > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("zero, resume", [
    (["strategy.engine=deepspeed", "strategy.zero_stage=2"], False),
    (["strategy.engine=deepspeed", "strategy.zero_stage=3", "strategy.offload_optimizer=true",
      "strategy.offload_params=true"], True),
], ids=["zero2", "zero3-offload-resume"])
def test_deepspeed_steps_checkpoint_and_resume_on_two_cpu_workers(zero, resume, tiny_dance_set, tmp_path):
    config = _config(tiny_dance_set, tmp_path, "ds", ["max_steps=2", "epochs=1", *zero])
    first = run(config)
    assert first.error is None
    with first.checkpoint.as_directory() as d:
        files = {p.name for p in Path(d).rglob("*") if p.is_file()}
    assert any("optim_states" in f for f in files)  # DeepSpeed's sharded optimizer states, one per rank
    assert sum("optim_states" in f for f in files) == 2
    if resume:  # the harder case (parameters and optimizer both partitioned and offloaded); ~50 s of CI each
        resumed = run(apply_overrides(config, ["max_steps=3", "epochs=2"]))  # same name: continues at step 2
        assert resumed.error is None
        with resumed.checkpoint.as_directory() as d:
            state = TrainerState.load(Path(d))
        assert state.step == 3 and [m["step"] for m in state.history] == [1, 2, 3]
    lora = load_file(str(export_path(config)))
    assert lora["diffusion_model.blocks.0.self_attn.q.lora_A.weight"].shape == (4, 192)
    assert all(torch.isfinite(v).all() for v in lora.values())

"""Presets: functions that build the seed's runs (and small CPU ones) as typed ``TrainConfig`` trees.

The seed's table, made 4n+1 (Wan's VAE compresses time 4x; a video of 4n+1 frames has n+1 latent
frames). Its "60 frames" is not 4n+1: we take **57**, the largest 4n+1 below 60, because 61 does
not fit one 80 GB card with plain gradient checkpointing (measured: 49 frames 71.1 GiB, 61 frames
out of memory; ``wanray train plan`` predicts 57 at ~77 GiB). 41, 45 and 25 are already 4n+1.

| preset | model | method | frames | strategy |
| --- | --- | --- | --- | --- |
| wan21_i2v_720p_lora | Wan2.1-I2V-14B-720P | LoRA r32 q,k,v,o,ffn.0,ffn.2 | 57 | DeepSpeed ZeRO-2, grad. checkpointing |
| wan21_i2v_720p_full | Wan2.1-I2V-14B-720P | full | 41 | ZeRO-3 + optimizer offload |
| wan22_i2v_a14b_lora_{high,low}_noise | Wan2.2-I2V-A14B, one expert | LoRA r32 | 45 | ZeRO-2 |
| wan22_i2v_a14b_full_{high,low}_noise | Wan2.2-I2V-A14B, one expert | full | 25 | ZeRO-3 + optimizer offload |
| embedded_lora / embedded_full / embedded_lora_smoke | embedded miniature | LoRA / full | 17 / 17 / 5 | DDP on CPU |
"""

from __future__ import annotations

from typing import Callable

from wanray.training.config import (
    CheckpointSettings,
    DataSettings,
    LoraSettings,
    OptimSettings,
    ScalingSettings,
    StrategySettings,
    TrainConfig,
    ValidationSettings,
)

# Where the 14B presets read their dataset unless told otherwise (--set data.dataset=DIR).
DEFAULT_DATASET = "data/dance"
# The seed's LoRA: rank 32 on the attention and FFN linears, lr 1e-4, 2 epochs, each entry seen 10x per epoch.
SEED_TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")
# "synthetic" = the synthetic set of ``wanray datasets synth``, generated into the run folder on first use.
SYNTHETIC = "synthetic"


def _seed_data(frames: int) -> DataSettings:
    return DataSettings(dataset=DEFAULT_DATASET, height=720, width=1280, frames=frames, repeat=10,
                        extra_inputs=("input_image",))


def _gpu_scaling() -> ScalingSettings:
    return ScalingSettings(num_workers=8, use_gpu=True, gpus_per_worker=1, cpus_per_worker=8)


def _lora_strategy() -> StrategySettings:
    return StrategySettings(engine="deepspeed", zero_stage=2, gradient_checkpointing=True)


def _full_strategy() -> StrategySettings:
    return StrategySettings(engine="deepspeed", zero_stage=3, offload_optimizer=True, gradient_checkpointing=True)


def wan21_i2v_720p_lora() -> TrainConfig:
    """The seed's Wan2.1-I2V-14B-720P LoRA at 720x1280, 57 frames."""
    return TrainConfig(
        name="wan21_i2v_720p_lora", model="wan2.1-i2v-14b-720p", data=_seed_data(57),
        lora=LoraSettings(rank=32, target_modules=SEED_TARGETS), optim=OptimSettings(lr=1e-4), epochs=2,
        strategy=_lora_strategy(), scaling=_gpu_scaling(), checkpoint=CheckpointSettings(every_steps=200, keep=3),
    )


def wan21_i2v_720p_full() -> TrainConfig:
    """The seed's Wan2.1-I2V-14B-720P full fine-tune at 720x1280, 41 frames."""
    return TrainConfig(
        name="wan21_i2v_720p_full", model="wan2.1-i2v-14b-720p", data=_seed_data(41), lora=None,
        optim=OptimSettings(lr=1e-5), epochs=2, strategy=_full_strategy(), scaling=_gpu_scaling(),
        checkpoint=CheckpointSettings(every_steps=200, keep=2),
    )


def _wan22(method: str, expert: str) -> TrainConfig:
    lora = method == "lora"
    return TrainConfig(
        name=f"wan22_i2v_a14b_{method}_{expert}", model="wan2.2-i2v-a14b", expert=expert, expert_boundary=0.9,
        data=_seed_data(45 if lora else 25), lora=LoraSettings(rank=32, target_modules=SEED_TARGETS) if lora else None,
        optim=OptimSettings(lr=1e-4 if lora else 1e-5), epochs=2,
        strategy=_lora_strategy() if lora else _full_strategy(), scaling=_gpu_scaling(),
        checkpoint=CheckpointSettings(every_steps=200, keep=3 if lora else 2),
    )


def wan22_i2v_a14b_lora_high_noise() -> TrainConfig:
    """Wan2.2-I2V-A14B LoRA of the high-noise expert (timesteps >= 900), 45 frames."""
    return _wan22("lora", "high_noise")


def wan22_i2v_a14b_lora_low_noise() -> TrainConfig:
    """Wan2.2-I2V-A14B LoRA of the low-noise expert (timesteps < 900), 45 frames."""
    return _wan22("lora", "low_noise")


def wan22_i2v_a14b_full_high_noise() -> TrainConfig:
    """Wan2.2-I2V-A14B full fine-tune of the high-noise expert, 25 frames."""
    return _wan22("full", "high_noise")


def wan22_i2v_a14b_full_low_noise() -> TrainConfig:
    """Wan2.2-I2V-A14B full fine-tune of the low-noise expert, 25 frames."""
    return _wan22("full", "low_noise")


def _embedded_data(frames: int, size: int, limit: int | None = None) -> DataSettings:
    return DataSettings(dataset=SYNTHETIC, height=size, width=size, frames=frames, repeat=1,
                        extra_inputs=("input_image", "vace_video"), limit=limit)


def _cpu_scaling(workers: int = 1) -> ScalingSettings:
    return ScalingSettings(num_workers=workers, use_gpu=False, cpus_per_worker=1)


def embedded_lora() -> TrainConfig:
    """A LoRA of the embedded miniature on CPU: 128x128, 17 frames, I2V + VACE pose conditioning."""
    return TrainConfig(
        name="embedded_lora", model="embedded", data=_embedded_data(17, 128),
        lora=LoraSettings(rank=16, target_modules=SEED_TARGETS), optim=OptimSettings(lr=1e-3, warmup_steps=10),
        epochs=4, strategy=StrategySettings(engine="ddp"), scaling=_cpu_scaling(),
        checkpoint=CheckpointSettings(every_steps=50, keep=2), validation=ValidationSettings(every_steps=50, steps=8),
        export_dtype="float32",
    )


def embedded_full() -> TrainConfig:
    """A full fine-tune of the embedded DiT and its VACE branch on CPU: 128x128, 17 frames.

    lr 2e-5: the shipped DiT is trained, and at 2e-4 a few dozen one-sample steps made it worse than the base on
    all 12 unseen entries; at 2e-5 it ranks first (bench/results/embedded_eval_cpu.md).
    """
    return TrainConfig(
        name="embedded_full", model="embedded", data=_embedded_data(17, 128), lora=None, train_vace=True,
        optim=OptimSettings(lr=2e-5, warmup_steps=10), epochs=4, strategy=StrategySettings(engine="ddp"),
        scaling=_cpu_scaling(), checkpoint=CheckpointSettings(every_steps=50, keep=2),
        validation=ValidationSettings(every_steps=50, steps=8), export_dtype="float32",
    )


def embedded_lora_smoke() -> TrainConfig:
    """Seconds on a CPU: 4 LoRA steps of the embedded model at 64x64, 5 frames, a checkpoint every 2."""
    return TrainConfig(
        name="embedded_lora_smoke", model="embedded", data=_embedded_data(5, 64, limit=4),
        lora=LoraSettings(rank=4, target_modules=SEED_TARGETS), optim=OptimSettings(lr=1e-3), epochs=1, max_steps=4,
        strategy=StrategySettings(engine="ddp", gradient_checkpointing=False), scaling=_cpu_scaling(),
        checkpoint=CheckpointSettings(every_steps=2, keep=1), export_dtype="float32",
    )


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    f.__name__: f
    for f in (
        wan21_i2v_720p_lora, wan21_i2v_720p_full,
        wan22_i2v_a14b_lora_high_noise, wan22_i2v_a14b_lora_low_noise,
        wan22_i2v_a14b_full_high_noise, wan22_i2v_a14b_full_low_noise,
        embedded_lora, embedded_full, embedded_lora_smoke,
    )
}


def get_preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None

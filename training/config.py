"""Typed configs for a training run: LoRA and full fine-tuning differ only by ``TrainConfig.lora``.

A run is one ``TrainConfig`` tree (presets in ``wanray.training.presets`` build them); every part is
checked in ``__post_init__`` so a bad value fails before any model is loaded, with the fix in the
message. ``apply_overrides`` turns ``--set optim.lr=2e-4`` strings into a new, re-validated config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wanray.inputs import check_frames, check_size

# The DiT linears a LoRA may target, by their original Wan names (peft matches them as name suffixes:
# "q" is self_attn.q and cross_attn.q of every block). Exactly these names have a mapping in
# diffusers' and ComfyUI's Wan LoRA loaders, so an export with any of them loads everywhere.
PORTABLE_LORA_TARGETS = ("q", "k", "v", "o", "k_img", "v_img", "ffn.0", "ffn.2")
EXTRA_INPUTS = ("input_image", "vace_video", "vace_reference_image", "control_video")
Expert = Literal["high_noise", "low_noise"]


@dataclass(kw_only=True)
class LoraSettings:
    """A LoRA on the DiT's linears (peft), trained while the base weights stay frozen.

    Attributes:
        rank: LoRA rank r.
        alpha: peft ``lora_alpha``; the update is scaled by alpha / rank (None: alpha = rank, scale 1,
            as DiffSynth trains). Exports bake the scale into ``lora_B``.
        target_modules: DiT linears to adapt, original Wan names (see ``PORTABLE_LORA_TARGETS``).
    """

    rank: int = 32
    alpha: float | None = None
    target_modules: tuple[str, ...] = ("q", "k", "v", "o", "ffn.0", "ffn.2")

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.rank < 1:
            raise ValueError(f"lora.rank must be at least 1, got {self.rank}")
        if self.alpha is not None and not 0 < self.alpha < math.inf:
            raise ValueError(f"lora.alpha must be a positive number (or None for alpha = rank), got {self.alpha}")
        unknown = [t for t in self.target_modules if t not in PORTABLE_LORA_TARGETS]
        if unknown or not self.target_modules:
            raise ValueError(
                f"lora.target_modules {list(self.target_modules)}: choose from {list(PORTABLE_LORA_TARGETS)} "
                f"(the DiT linears diffusers' and ComfyUI's Wan LoRA loaders know); unknown: {unknown}"
            )

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank


@dataclass(kw_only=True)
class DataSettings:
    """What to train on.

    Attributes:
        dataset: a dataset directory (``metadata.csv`` + media, as ``wanray datasets`` writes it).
        split: the split to train on; ``validation_split`` the one validation generates from.
        height / width: multiples of 16; frames: 4n+1 (every sample is fitted to this shape); fps: the
            frame rate videos are sampled at.
        repeat: passes over the data per epoch (DiffSynth's ``dataset_repeat``).
        extra_inputs: conditioning inputs read from each entry besides video and prompt.
        latent_cache: a latent cache directory (``wanray datasets cache``); used when it matches the
            model and shape, otherwise the run encodes pixels on the workers (and logs why).
        shuffle_buffer: rows in each worker's local shuffle buffer (0: file order), seeded per epoch.
        limit: use at most this many training entries (smoke runs).
        batch_size: samples per micro-step on each worker, stacked into one forward, each with its own
            timestep and noise (every row is fitted to the same shape). A small DiT is launch-bound at 1.
        in_memory: with a latent cache, each worker reads its rows once, keeps their tensors on its device
            and draws every pass as a seeded permutation of them (no Ray Data pass, no decoding per step).
            For caches that fit the device's memory (the embedded model: ~4 MB a row); ``shuffle_buffer``
            then does not apply.
    """

    dataset: str
    split: str = "train"
    validation_split: str = "test"
    height: int
    width: int
    frames: int
    fps: float = 15.0
    repeat: int = 1
    extra_inputs: tuple[str, ...] = ("input_image",)
    latent_cache: str | None = None
    shuffle_buffer: int = 0
    limit: int | None = None
    batch_size: int = 1
    in_memory: bool = False

    def __post_init__(self) -> None:
        self.extra_inputs = tuple(self.extra_inputs)
        check_size(self.height, self.width)
        check_frames(self.frames)
        if self.repeat < 1:
            raise ValueError(f"data.repeat must be at least 1, got {self.repeat}")
        bad = [x for x in self.extra_inputs if x not in EXTRA_INPUTS]
        if bad:
            raise ValueError(f"data.extra_inputs {bad} unknown; choose from {list(EXTRA_INPUTS)}")
        if self.shuffle_buffer < 0 or (self.limit is not None and self.limit < 1):
            raise ValueError("data.shuffle_buffer must be >= 0 and data.limit >= 1 (or None)")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {self.batch_size}")
        if self.in_memory and self.latent_cache is None:
            raise ValueError("data.in_memory keeps a latent cache's rows in memory: set data.latent_cache too")

    @property
    def tokens(self) -> int:
        """DiT sequence length of one sample: latent frames x (H/16) x (W/16)."""
        return ((self.frames - 1) // 4 + 1) * (self.height // 16) * (self.width // 16)


@dataclass(kw_only=True)
class OptimSettings:
    """AdamW with linear warm-up, then constant or cosine decay.

    Attributes:
        lr: peak learning rate. weight_decay / betas / eps: AdamW's.
        warmup_steps: linear warm-up from 0. schedule: after warm-up, ``constant`` or ``cosine`` to 0.
        grad_clip: clip the global gradient norm (None: off).
        grad_accum: micro-steps per optimizer step (each micro-step is ``data.batch_size`` samples per worker).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float | None = 1.0
    grad_accum: int = 1

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if not 0 < self.lr < math.inf:
            raise ValueError(f"optim.lr must be a positive number, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {list(self.betas)}")
        if not 0 < self.eps < math.inf or not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"optim.eps must be positive and optim.weight_decay >= 0, "
                             f"got {self.eps}, {self.weight_decay}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"optim.schedule must be constant or cosine, got {self.schedule!r}")
        if self.warmup_steps < 0 or self.grad_accum < 1:
            raise ValueError("optim.warmup_steps must be >= 0 and optim.grad_accum >= 1")
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ValueError(f"optim.grad_clip must be a positive number or None, got {self.grad_clip}")


@dataclass(kw_only=True)
class StrategySettings:
    """How the step is distributed and how memory is saved.

    Attributes:
        engine: ``ddp`` (torch DDP through Ray Train) or ``deepspeed`` (ZeRO).
        zero_stage: DeepSpeed ZeRO stage 0-3 (2: optimizer + gradients sharded; 3: parameters too).
        offload_optimizer: keep optimizer states (and, with ZeRO-3, ``offload_params``: parameters) in CPU memory.
        gradient_checkpointing: recompute each DiT block in the backward pass.
        checkpoint_offload: also keep the checkpointed block inputs in CPU memory
            (DiffSynth's ``use_gradient_checkpointing_offload``).
        recompute_attention: False keeps each block's self-attention output instead of recomputing it
            in the backward pass (selective checkpointing: faster, + tokens x dim x 2 bytes per block).
        precision: ``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp32``, or ``tf32``: fp32 weights and
            activations with TensorFloat-32 matmuls and convolutions on GPUs (~8x plain fp32's matmul rate on
            Hopper, 10-bit mantissas in the products; the same as fp32 on CPU).
        attention: attention backend (``wanray.attention``); ``auto`` picks the fastest installed.
        compile: ``torch.compile`` each DiT/VACE block (regional, after the LoRA is added; inductor's
            on-disk cache as in generation, ``$WANRAY_COMPILE_CACHE``). CPU works too (needs a C++ compiler).
        fp8: FP8 matmuls (torchao float8 training, ``accel.apply_fp8_training``) for the DiT/VACE blocks' linear
            layers, forward and backward; with a LoRA the frozen base layers run in FP8 and the adapters do
            not. Needs GPUs of compute capability >= 8.9 and ``pip install 'wanray[fp8]'``; use it with
            ``compile`` (torchao's casts are fast only when compiled).
    """

    engine: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    gradient_checkpointing: bool = True
    checkpoint_offload: bool = False
    recompute_attention: bool = True
    precision: Literal["auto", "bf16", "fp32", "tf32"] = "auto"
    attention: str = "auto"
    compile: bool = False
    fp8: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ("ddp", "deepspeed"):
            raise ValueError(f"strategy.engine must be ddp or deepspeed, got {self.engine!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"strategy.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.engine == "ddp" and (self.offload_optimizer or self.offload_params):
            raise ValueError("optimizer/parameter offload needs strategy.engine=deepspeed")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(f"strategy.offload_params needs zero_stage 3, got {self.zero_stage}")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("strategy.offload_optimizer needs zero_stage 1, 2 or 3")
        if self.checkpoint_offload and not self.gradient_checkpointing:
            raise ValueError("strategy.checkpoint_offload needs strategy.gradient_checkpointing")
        if self.checkpoint_offload and not self.recompute_attention:
            raise ValueError("strategy.recompute_attention=false is selective checkpointing; it has no CPU offload")
        if self.precision not in ("auto", "bf16", "fp32", "tf32"):
            raise ValueError(f"strategy.precision must be auto, bf16, fp32 or tf32, got {self.precision!r}")
        from wanray.attention import BACKENDS

        if self.attention in BACKENDS and not BACKENDS[self.attention].trainable:
            raise ValueError(f"strategy.attention={self.attention} has no backward pass: training would get no gradient "
                             "through self-attention; use auto, sdpa or cudnn-fp8")

    @property
    def zero(self) -> int:
        """The effective ZeRO stage (0 for DDP)."""
        return self.zero_stage if self.engine == "deepspeed" else 0


@dataclass(kw_only=True)
class ScalingSettings:
    """Ray Train's ``ScalingConfig``: how many workers and what each reserves."""

    num_workers: int = 1
    use_gpu: bool = False
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"scaling.num_workers must be at least 1, got {self.num_workers}")
        if self.cpus_per_worker <= 0 or (self.use_gpu and self.gpus_per_worker <= 0):
            raise ValueError("scaling.cpus_per_worker (and gpus_per_worker with use_gpu) must be positive")


@dataclass(kw_only=True)
class CheckpointSettings:
    """Periodic checkpoints (Ray Train ``CheckpointConfig``) and fault tolerance (``FailureConfig``)."""

    every_steps: int = 100
    keep: int = 2
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.every_steps < 1 or self.keep < 1 or self.max_failures < -1:
            raise ValueError("checkpoint.every_steps and checkpoint.keep must be >= 1, max_failures >= -1")


@dataclass(kw_only=True)
class ValidationSettings:
    """Generate a few validation entries every ``every_steps`` (0: never) and log PSNR/SSIM and videos."""

    every_steps: int = 0
    samples: int = 2
    steps: int = 20
    cfg: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.samples < 1 or self.steps < 1:
            raise ValueError("validation.every_steps >= 0, validation.samples >= 1, validation.steps >= 1")


@dataclass(kw_only=True)
class FaultInjection:
    """Testing aid: rank ``rank`` kills its own process (SIGKILL) at ``step``, once per ``marker`` file."""

    rank: int
    step: int
    marker: str


@dataclass(kw_only=True)
class TrainConfig:
    """One fine-tuning run of a Wan DiT.

    Attributes:
        name: run name (Ray Train experiment name; checkpoints and exports under ``output_dir/name``).
        model: ``embedded``, a spec name (weights under ``$WANRAY_MODEL_DIR``) or a model directory.
        lora: LoRA settings; None trains every DiT weight (full fine-tune).
        expert: Wan2.2 only: which expert to train (each owns its own timestep range).
        expert_boundary: timestep fraction of 1000 where the experts meet (high-noise >= boundary).
        train_vace: full fine-tune only: also train the VACE branch.
        epochs / max_steps: stop after ``epochs`` epochs or ``max_steps`` optimizer steps, first reached.
        max_time_s: also stop once this many seconds of training have passed (like Lightning's ``max_time``):
            checked every ``log_every`` steps, then checkpointed and exported as a finished run.
        seed: seeds the weights of new layers, the data order and each step's noise and timestep.
        export_dtype: dtype of exported weights.
    """

    name: str
    model: str
    data: DataSettings
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    expert: Expert | None = None
    expert_boundary: float = 0.9
    train_vace: bool = False
    optim: OptimSettings = field(default_factory=OptimSettings)
    strategy: StrategySettings = field(default_factory=StrategySettings)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    epochs: int = 1
    max_steps: int | None = None
    max_time_s: float | None = None
    seed: int = 0
    log_every: int = 1
    output_dir: str = "outputs/train"
    export_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    fault_injection: FaultInjection | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if self.expert not in (None, "high_noise", "low_noise"):
            raise ValueError(f"expert must be high_noise, low_noise or None, got {self.expert!r}")
        if not 0 < self.expert_boundary < 1:
            raise ValueError(f"expert_boundary must be in (0, 1), got {self.expert_boundary}")
        if self.train_vace and self.lora is not None:
            raise ValueError("train_vace is for full fine-tunes (lora=None); a LoRA trains the DiT only")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1) or self.log_every < 1:
            raise ValueError("epochs, max_steps and log_every must be at least 1")
        if self.max_time_s is not None and not 0 < self.max_time_s < math.inf:
            raise ValueError(f"max_time_s must be positive seconds (or None), got {self.max_time_s}")
        if self.export_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"export_dtype must be bfloat16 or float32, got {self.export_dtype!r}")
        if self.strategy.fp8 and not self.scaling.use_gpu:
            raise ValueError("strategy.fp8 runs float8 matmuls on GPUs of compute capability >= 8.9 (H100, L40S, "
                             "RTX 4090); set scaling.use_gpu=true or drop strategy.fp8")

    @property
    def method(self) -> str:
        return "lora" if self.lora is not None else "full"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser().resolve() / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _build(cls, data)


# -- overrides (``--set key=value``) and dict round trip --


def _build(cls, data: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name], f.name)
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    return cls(**kwargs)


def _convert(hint, value, where: str):
    """Turn JSON-ish ``value`` into ``hint``'s type (nested dataclasses, tuples, optionals)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"{where} may not be None")
        for arg in (a for a in args if a is not type(None)):
            return _convert(arg, value, where)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return _build(hint, value)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [v.strip() for v in str(value).split(",") if v.strip()]
        item_type = args[0] if args else str
        return tuple(_scalar(item_type, v, where) for v in items)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    return _scalar(hint, value, where)


def _scalar(hint, value, where: str):
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
        if hint is float:
            return number
        if not number.is_integer():
            raise ValueError(f"{where} must be a whole number, got {value!r}")
        return int(number)
    if hint is str:
        return str(value)
    return value


def apply_overrides(config: TrainConfig, assignments: list[str]) -> TrainConfig:
    """``["optim.lr=2e-4", "data.frames=33", "lora=none"]`` -> a new, validated config."""
    data = config.to_dict()
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value (e.g. optim.lr=2e-4), got {assignment!r}")
        value = _parse_value(raw)
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a config section")
            if node[part] is None:
                raise ValueError(
                    f"--set {key}: {'.'.join(parts[: i + 1])} is None in this preset"
                    + (" (a full fine-tune); set lora.rank on a LoRA preset instead" if part == "lora" else "")
                )
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ValueError(f"--set {key}: unknown setting; see `wanray train presets --show NAME` for the fields")
        node[parts[-1]] = value
    return TrainConfig.from_dict(data)


def _parse_value(raw: str):
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text

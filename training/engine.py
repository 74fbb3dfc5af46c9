"""DDP or DeepSpeed behind one small interface: forward, backward, step, save, load, gather.

The loop never branches on the strategy; this module does. DeepSpeed runs with a torch optimizer
(``zero_allow_untested_optimizer``) so no Adam op is compiled, except DeepSpeed's CPU Adam for
optimizer offload on GPU hosts, where torch's AdamW on CPU tensors would be the bottleneck.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import re
from pathlib import Path
from typing import Callable

import torch

from wanray.training.checkpoint import Precision
from wanray.training.config import OptimSettings, StrategySettings

log = logging.getLogger(__name__)

STATE_TAG = "state"  # DeepSpeed checkpoint tag (one state per Ray checkpoint directory)


def lr_lambda(optim: OptimSettings, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at an optimizer step: linear warm-up, then constant or cosine."""

    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return 1.0
        decay_steps = max(1, total_steps - optim.warmup_steps)
        progress = min(1.0, (step - optim.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(params: list[torch.nn.Parameter], optim: OptimSettings, fused: bool) -> torch.optim.Optimizer:
    kwargs = dict(lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay)
    if fused:
        kwargs["fused"] = True
    return torch.optim.AdamW(params, **kwargs)


def deepspeed_config(strategy: StrategySettings, optim: OptimSettings, bf16: bool, micro_batch: int = 1) -> dict:
    zero: dict = {"stage": strategy.zero_stage, "contiguous_gradients": True, "overlap_comm": False}
    if strategy.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if strategy.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if strategy.zero_stage == 3:
        # gather whole layers only when used; keep nothing persistent beyond small tensors
        zero.update({"stage3_param_persistence_threshold": 0, "stage3_max_live_parameters": 1e9})
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": optim.grad_accum,
        "gradient_clipping": optim.grad_clip or 0.0,
        "bf16": {"enabled": bf16},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class Engine:
    """The interface the loop uses. ``module`` is the wrapped module; call ``forward`` for predictions."""

    module: torch.nn.Module
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def forward(self, **inputs) -> torch.Tensor:
        raise NotImplementedError

    def accumulate(self, boundary: bool):
        """Context for one micro-step's forward and backward: DDP skips the gradient all-reduce inside
        an accumulation window (``no_sync``) and syncs on its last micro-step."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self, boundary: bool) -> None:
        """After each micro-step's backward; the optimizer steps when ``boundary`` (end of accumulation)."""
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Every rank calls this with the same directory."""
        raise NotImplementedError

    def load(self, directory: Path) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def full_parameters(self, params: list[torch.nn.Parameter]):
        """Parameters whole on every rank for the duration (ZeRO-3 gathers them; a no-op otherwise)."""
        yield

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    @property
    def gathers_parameters(self) -> bool:
        """True when a forward needs every rank (ZeRO-3): validation must then run on all ranks."""
        return False

    # True when every rank writes its own checkpoint files (each node's local rank 0 uploads them).
    files_on_every_node = False


class DDPEngine(Engine):
    """torch DDP (through Ray Train's ``prepare_model``) with float32 master weights.

    The module runs entirely in the compute dtype (bf16 LoRA weights on GPU, as DiffSynth trains: no
    per-layer casts); the optimizer updates float32 master copies, which are copied back after each
    step, so small updates are not lost to bf16 rounding. On CPU (float32) the weights are the masters.
    """

    def __init__(self, module: torch.nn.Module, optim: OptimSettings, total_steps: int, dtype: torch.dtype,
                 device: torch.device, prepare: bool = True, precision: Precision = "exact"):
        self.raw = module
        self.module = module
        self.params = [p for p in module.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.to(dtype)
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        self.master = self.params if dtype == torch.float32 else [
            torch.nn.Parameter(p.detach().float().clone()) for p in self.params
        ]
        self.rank, self.precision = 0, precision  # precision: the checkpoint's (wanray.training.checkpoint)
        if prepare:  # inside a Ray Train worker: DDP over the workers (no wrapper for one worker)
            import ray.train
            import ray.train.torch

            self.rank = ray.train.get_context().get_world_rank()
            self.module = ray.train.torch.prepare_model(module, parallel_strategy_kwargs={"find_unused_parameters": False})
        self.optimizer = build_optimizer(self.master, optim, fused=device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(optim, total_steps))
        self.grad_clip = optim.grad_clip

    def forward(self, **inputs) -> torch.Tensor:
        return self.module(**inputs)

    def accumulate(self, boundary: bool):
        if boundary or not hasattr(self.module, "no_sync"):
            return contextlib.nullcontext()
        return self.module.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self, boundary: bool) -> None:
        if not boundary:
            return
        if self.master is not self.params:
            for m, p in zip(self.master, self.params):
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.master, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.master is not self.params:
            with torch.no_grad():
                for m, p in zip(self.master, self.params):
                    p.copy_(m)

    def save(self, directory: Path) -> None:
        from wanray.training.checkpoint import save_checkpoint

        if self.rank != 0:
            return
        save_checkpoint(directory, dict(zip(self.names, self.master)), self.optimizer, self.scheduler, self.precision)

    def load(self, directory: Path) -> None:
        from wanray.training.checkpoint import load_checkpoint

        state = load_checkpoint(directory, self.optimizer, self.scheduler)
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"{directory}: checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
        with torch.no_grad():
            for n, m, p in zip(self.names, self.master, self.params):
                m.copy_(state[n])
                p.copy_(state[n])


class DeepSpeedEngine(Engine):
    """DeepSpeed ZeRO 0-3, optional optimizer/parameter offload; reuses the process group Ray Train set up."""

    def __init__(self, module: torch.nn.Module, strategy: StrategySettings, optim: OptimSettings, total_steps: int,
                 dtype: torch.dtype, device: torch.device, micro_batch: int = 1):
        import deepspeed

        if device.type == "cpu":
            # DeepSpeed's shared-memory all-reduce is a CPU speed-up compiled on first use (~100 s);
            # gloo, which Ray Train already set up, does the same job.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        params = [p for p in module.parameters() if p.requires_grad]
        if strategy.offload_optimizer and device.type == "cuda":
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(params, lr=optim.lr, betas=optim.betas, eps=optim.eps,
                                         weight_decay=optim.weight_decay, adamw_mode=True)
        else:
            optimizer = build_optimizer(params, optim, fused=device.type == "cuda" and not strategy.offload_optimizer)
        factor = lr_lambda(optim, total_steps)
        self.module, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module,
            model_parameters=params,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor),
            config=deepspeed_config(strategy, optim, bf16=dtype == torch.bfloat16, micro_batch=micro_batch),
            dist_init_required=False,
        )
        self.stage = strategy.zero_stage
        self.files_on_every_node = True

    def forward(self, **inputs) -> torch.Tensor:
        return self.module(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        self.module.backward(loss)

    def step(self, boundary: bool) -> None:
        self.module.step()  # DeepSpeed counts micro-steps itself (gradient_accumulation_steps)

    def save(self, directory: Path) -> None:
        self.module.save_checkpoint(str(directory), tag=STATE_TAG, exclude_frozen_parameters=True)

    def load(self, directory: Path) -> None:
        check_deepspeed_files(Path(directory) / STATE_TAG)
        path, _ = self.module.load_checkpoint(
            str(directory), tag=STATE_TAG, load_module_strict=False, load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise ValueError(f"{directory}: no DeepSpeed checkpoint (tag {STATE_TAG!r}) to resume from")

    @contextlib.contextmanager
    def full_parameters(self, params: list[torch.nn.Parameter]):
        if self.stage != 3:
            yield
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield

    @property
    def gathers_parameters(self) -> bool:
        return self.stage == 3


def build_engine(module: torch.nn.Module, strategy: StrategySettings, optim: OptimSettings, total_steps: int,
                 dtype: torch.dtype, device: torch.device, micro_batch: int = 1) -> Engine:
    if strategy.engine == "deepspeed":
        return DeepSpeedEngine(module, strategy, optim, total_steps, dtype, device, micro_batch)
    return DDPEngine(module, optim, total_steps, dtype, device)


# DeepSpeed's own state classes in its checkpoint files (ZeRO 2 and 3, optimizer offload or not; fp16's scalers)
DEEPSPEED_STATE_CLASSES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


def check_deepspeed_files(directory: Path) -> None:
    """Read every checkpoint file with torch's weights-only unpickler before DeepSpeed loads it whole.

    DeepSpeed resumes with ``torch.load(weights_only=False)``: a file swapped in the run's folder would run code on
    every worker. Tensors, containers and ``DEEPSPEED_STATE_CLASSES`` pass; anything else is refused, named."""
    import importlib

    allowed = []
    for name in DEEPSPEED_STATE_CLASSES:
        module, _, attr = name.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):  # a DeepSpeed without one cannot have written it
            allowed.append(getattr(importlib.import_module(module), attr))
    for path in sorted(Path(directory).glob("*.pt")):
        try:
            with torch.serialization.safe_globals(allowed):
                torch.load(path, weights_only=True, map_location="cpu", mmap=True)
        except pickle.UnpicklingError as e:
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            raise ValueError(f"{path}: refused to resume from it: it holds {found.group(1) if found else 'an object'}, "
                             "beyond tensors and DeepSpeed's own state, and loading it would run it") from e
        except (RuntimeError, OSError) as e:  # not torch.save's zip format: DeepSpeed never writes that
            raise ValueError(f"{path}: refused to resume from it: not a torch checkpoint file ({e})") from e


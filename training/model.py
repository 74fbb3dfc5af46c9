"""The model side of training: load the pipeline, pick the expert, add the LoRA, mark what trains.

The DiT is DiffSynth's ``WanModel`` as ``WanGenerator.load`` builds it; the LoRA is peft's, injected
into that module (so ``pipe.dit`` *is* the model being trained and validation generates with the
current weights). ``DiTModule`` is the one ``nn.Module`` handed to DDP or DeepSpeed; its forward is
DiffSynth's ``model_fn_wan_video`` (``WanModel.forward`` is stale in diffsynth 2.1.12).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from wanray.training.config import LoraSettings, TrainConfig

log = logging.getLogger(__name__)


_ATTENTION_OPS = ("_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention",
                  "_scaled_dot_product_efficient_attention")


def keep_self_attention_outputs(blocks) -> int:
    """Selective activation checkpointing of each block: recompute everything in the backward pass except
    the self-attention kernels, whose outputs are kept (+ S x dim x 2 bytes per block). Attention is most
    of a 720p step's FLOPs, so not running it a second time saves about a sixth of the step.
    Replaces DiffSynth's whole-block checkpointing (call the model function with it off)."""
    from functools import partial

    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    import wanray.fp8_attention  # registers wanray::fp8_attention_forward (strategy.attention=cudnn-fp8)

    ops = {getattr(torch.ops.aten, name).default for name in _ATTENTION_OPS if hasattr(torch.ops.aten, name)}
    ops.add(torch.ops.wanray.fp8_attention_forward.default)

    def policy(ctx, op, *args, **kwargs):
        is_self = op in ops and args[0].shape[-2] == args[1].shape[-2]  # q and k of the same length
        return CheckpointPolicy.MUST_SAVE if is_self else CheckpointPolicy.PREFER_RECOMPUTE

    context = partial(create_selective_checkpoint_contexts, policy)
    for block in blocks:
        forward = block.forward

        def checkpointed(*args, _forward=forward, **kwargs):
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, context_fn=context, **kwargs)

        block.forward = checkpointed
    return len(blocks)


class DiTModule(torch.nn.Module):
    """DiT (+ VACE branch) with DiffSynth's model function as forward: predicts the flow velocity."""

    def __init__(self, dit: torch.nn.Module, vace: torch.nn.Module | None, *, checkpointing: bool, offload: bool,
                 recompute_attention: bool = True):
        super().__init__()
        self.dit = dit
        self.vace = vace
        self.offload = offload
        if checkpointing and not recompute_attention:
            keep_self_attention_outputs(dit.blocks)  # our selective checkpointing instead of DiffSynth's
            checkpointing = False
        self.checkpointing = checkpointing

    def forward(
        self,
        latents: torch.Tensor,  # [B, 16, T', H/8, W/8]
        timestep: torch.Tensor,  # [B]: each sample's own
        context: torch.Tensor,  # [B, text_len, text_dim]
        clip_feature: torch.Tensor | None = None,  # [B, 257, 1280]
        y: torch.Tensor | None = None,  # [B, 20, T', H/8, W/8]
        vace_context: torch.Tensor | None = None,  # [B, 96, T', H/8, W/8]
    ) -> torch.Tensor:  # [B, 16, T', H/8, W/8]
        from diffsynth.pipelines.wan_video import model_fn_wan_video

        return model_fn_wan_video(
            dit=self.dit,
            vace=self.vace if vace_context is not None else None,
            latents=latents,
            timestep=timestep,
            context=context,
            clip_feature=clip_feature,
            y=y,
            vace_context=vace_context,
            use_gradient_checkpointing=self.checkpointing and self.training,
            use_gradient_checkpointing_offload=self.offload and self.training,
        )


def add_lora(dit: torch.nn.Module, lora: LoraSettings, seed: int) -> int:
    """Inject peft LoRA layers into the DiT's target linears; returns how many layers were adapted.

    ``lora_A`` is initialised from ``seed`` (every rank builds the same LoRA), ``lora_B`` is zero, so
    the adapted model starts exactly at the base model.
    """
    from peft import LoraConfig, inject_adapter_in_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(
            LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha if lora.alpha is not None else lora.rank,
                target_modules=list(lora.target_modules),
                lora_dropout=0.0,
            ),
            dit,
        )
    adapted = sum(1 for name, _ in dit.named_modules() if name.endswith(".lora_A.default"))
    if adapted == 0:
        raise ValueError(f"lora.target_modules {list(lora.target_modules)} matched no layer of the DiT")
    return adapted


def lora_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if ".lora_A." in n or ".lora_B." in n]


def pick_expert(pipe, expert: str | None) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(DiT, VACE) to train: Wan2.2's ``high_noise`` expert is ``pipe.dit``, ``low_noise`` is ``pipe.dit2``."""
    has_two = getattr(pipe, "dit2", None) is not None
    if expert is None:
        if has_two:
            raise ValueError("this model has two experts (Wan2.2): set expert=high_noise or expert=low_noise")
        return pipe.dit, getattr(pipe, "vace", None)
    if not has_two:
        raise ValueError(f"expert={expert!r} is for Wan2.2's two experts; this model has one DiT: set expert=none")
    if expert == "high_noise":
        return pipe.dit, getattr(pipe, "vace", None)
    return pipe.dit2, getattr(pipe, "vace2", None)


@dataclass
class TrainingModel:
    generator: object  # wanray.generation.WanGenerator (its pipe holds the module being trained)
    module: DiTModule
    dtype: torch.dtype  # compute dtype
    trainable: list[str]  # names (in ``module``) of the parameters that train
    parked: list[torch.nn.Module] = None  # frozen modules kept in CPU memory while training

    @contextlib.contextmanager
    def whole_pipeline(self):
        """Parked modules back on the device for the duration (validation generates with the full pipeline)."""
        device = self.generator.device
        for m in self.parked or ():
            m.to(device)
        try:
            yield
        finally:
            for m in self.parked or ():
                m.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def park(pipe, trained_dit: torch.nn.Module, latents_cached: bool) -> list[torch.nn.Module]:
    """Move frozen modules the training step does not use to CPU memory: Wan2.2's other expert (and its
    VACE), and with a latent cache the encoders (umT5, CLIP, VAE)."""
    parked = []
    for name in ("dit", "dit2"):
        m = getattr(pipe, name, None)
        if m is not None and m is not trained_dit:
            parked.append(m)
    if latents_cached:
        parked += [m for m in (pipe.text_encoder, getattr(pipe, "image_encoder", None), pipe.vae) if m is not None]
    for m in parked:
        m.to("cpu")
    return parked


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def build_training_model(config: TrainConfig, device: torch.device, latents_cached: bool = False) -> TrainingModel:
    """Load the model named by the config on ``device`` and make the configured parameters trainable."""
    from wanray.config import ModelConfig
    from wanray.generation import WanGenerator

    dtype = compute_dtype(config.strategy.precision, device)
    if config.strategy.precision == "tf32" and device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls in this worker process (cuDNN convs default to it)
    generator = WanGenerator.load(
        ModelConfig(
            model=config.model,
            device=str(device),
            dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
            vae_dtype="bfloat16" if dtype == torch.bfloat16 else "float32",  # latents in the training dtype, not timed
            attention=config.strategy.attention,
        )
    )
    pipe = generator.pipe
    dit, vace = pick_expert(pipe, config.expert)
    uses_vace = any(x in config.data.extra_inputs for x in ("vace_video", "vace_reference_image"))
    if uses_vace and vace is None:
        raise ValueError(f"data.extra_inputs {list(config.data.extra_inputs)} need a VACE branch; {config.model!r} has none")
    if config.train_vace and not uses_vace:
        raise ValueError("train_vace needs vace_video or vace_reference_image in data.extra_inputs")
    for m in (pipe.dit, getattr(pipe, "dit2", None), vace):
        if m is not None:
            m.requires_grad_(False)
    if config.lora is not None:
        adapted = add_lora(dit, config.lora, config.seed)
        log.info("LoRA rank %d on %d DiT layers (%s)", config.lora.rank, adapted, ", ".join(config.lora.target_modules))
    else:
        dit.requires_grad_(True)
        if config.train_vace:
            vace.requires_grad_(True)
    module = DiTModule(
        dit,
        vace if uses_vace else None,
        checkpointing=config.strategy.gradient_checkpointing,
        offload=config.strategy.checkpoint_offload,
        recompute_attention=config.strategy.recompute_attention,
    ).to(device)
    if config.strategy.fp8:  # after the LoRA (its adapters stay out of FP8), before compile
        from wanray.accel import apply_fp8_training

        apply_fp8_training((dit, vace if uses_vace else None))
    if config.strategy.compile:
        from wanray.accel import compile_blocks

        compile_blocks((dit, vace if uses_vace else None))
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    module.train()
    parked = park(pipe, dit, latents_cached) if device.type == "cuda" else []
    count = sum(p.numel() for n, p in module.named_parameters() if p.requires_grad)
    log.info("%s fine-tune of %s: %s trainable parameters in %d tensors", config.method, config.model,
             f"{count:,}", len(trainable))
    return TrainingModel(generator=generator, module=module, dtype=dtype, trainable=trainable, parked=parked)

"""Frame-budget planner: peak GPU memory of one training worker, and the most frames that fit.

    wanray train plan --preset wan21_i2v_720p_lora --gpu-mem 80

The model is a sum of parts, each a formula in the architecture (``spec.dit``), the method, the
strategy and the sequence length ``tokens = latent_frames * H/16 * W/16`` (latent_frames = (F-1)/4+1):

- frozen weights: bf16 DiT (+ VACE) that a LoRA run keeps whole on every GPU (ZeRO-3: 1/N of it);
- trainable state: parameters, gradients and AdamW states by ZeRO stage and offload
  (DeepSpeed bf16: 2 + 2 + 12 bytes per parameter, sharded over N workers from stage 3 / 2 / 1;
  DDP: float32 master weights 4 + 4 + 8);
- encoders: umT5, VAE and CLIP when they run on the GPU (pixel inputs; parked in CPU memory with a latent cache);
- activations per token: with gradient checkpointing, every block's input (L x dim x 2 bytes; in
  CPU memory with checkpoint offload) plus one block's working set during its recompute and backward;
  without checkpointing, every block's saved tensors;
- a fixed overhead (CUDA context, allocator slack).

The per-block constants are calibrated on an H100 with random 14B weights (``bench/train_memory.py``,
results in bench/results/train_memory.md); the formula scales them with dim and ffn_dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from wanray.specs import ModelSpec, get_spec
from wanray.training.config import TrainConfig

GIB = 1024**3
# A card sold as "80 GB" (H100) gives torch 81559 MiB; the same ratio for other sizes.
CARD_USABLE_PER_GB = 81559 / 81920
# CUDA context + cuBLAS/cuDNN workspaces (outside torch's allocator statistics).
CUDA_CONTEXT_GIB = 0.6
# Allocator slack: reserved / allocated at the peak of a step, measured 1.04-1.05 on an H100 (33-57 frames).
ALLOCATOR_SLACK = 1.05

# One block's working set in its backward pass, in elements per token: coefficient x dim, x ffn_dim.
# Analytically ~24 x dim (norms, q/k/v/o, rope, attention output, residuals, their gradients) and
# 4 x ffn_dim (FFN hidden before/after GELU, and gradient); ``BLOCK_FACTOR`` calibrates the total per
# implementation: DiffSynth's float64 RoPE keeps wider temporaries than ours.
BLOCK_DIM_TERMS = 24
BLOCK_FFN_TERMS = 4
BLOCK_FACTOR = {"wanray": 0.80, "diffsynth": 0.88}
# Saved tensors of a block without checkpointing (elements per token).
SAVED_DIM_TERMS = 22
SAVED_FFN_TERMS = 2
# Latents, targets and predictions in float32, head and patch embedding: elements per token.
OUTSIDE_BLOCKS_PER_TOKEN = 512


@dataclass(kw_only=True)
class Setup:
    """Everything the estimate depends on (built from a TrainConfig, or by hand in the benchmark)."""

    spec: ModelSpec
    method: str  # "lora" or "full"
    lora_rank: int = 32
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o", "ffn.0", "ffn.2")
    train_vace: bool = False
    uses_vace: bool = False
    engine: str = "deepspeed"  # or "ddp"
    zero_stage: int = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    workers: int = 1
    checkpointing: bool = True
    checkpoint_offload: bool = False
    recompute_attention: bool = True
    encoders_on_gpu: bool = False
    # Frozen DiTs besides the one trained that stay on the GPU (DiffSynth's pipeline keeps both Wan2.2
    # experts resident when both are loaded; wanray parks the other expert in CPU memory: 0).
    other_experts_on_gpu: int = 0
    frames: int = 49
    height: int = 720
    width: int = 1280
    batch: int = 1  # samples per micro-batch: every activation term scales with it
    implementation: str = "wanray"

    @classmethod
    def from_config(cls, config: TrainConfig) -> "Setup":
        from wanray.generation import resolve_model
        from wanray.specs import NAMED_SPECS

        spec = get_spec(config.model) if config.model in NAMED_SPECS else resolve_model(config.model)[1]
        uses_vace = any(x in config.data.extra_inputs for x in ("vace_video", "vace_reference_image"))
        return cls(
            spec=spec, method=config.method,
            lora_rank=config.lora.rank if config.lora else 0,
            lora_targets=config.lora.target_modules if config.lora else (),
            train_vace=config.train_vace, uses_vace=uses_vace and spec.vace is not None,
            engine=config.strategy.engine, zero_stage=config.strategy.zero,
            offload_optimizer=config.strategy.offload_optimizer, offload_params=config.strategy.offload_params,
            workers=config.scaling.num_workers, checkpointing=config.strategy.gradient_checkpointing,
            checkpoint_offload=config.strategy.checkpoint_offload,
            recompute_attention=config.strategy.recompute_attention,
            encoders_on_gpu=config.data.latent_cache is None,
            frames=config.data.frames, height=config.data.height, width=config.data.width,
            batch=config.data.batch_size,
        )

    @property
    def tokens(self) -> int:
        return ((self.frames - 1) // 4 + 1) * (self.height // 16) * (self.width // 16)


@dataclass
class Estimate:
    parts: dict[str, float] = field(default_factory=dict)  # GiB each

    @property
    def total(self) -> float:
        """Peak bytes in GiB as torch's allocator would reserve them, plus the CUDA context."""
        return sum(self.parts.values()) * ALLOCATOR_SLACK + CUDA_CONTEXT_GIB

    @property
    def allocated(self) -> float:
        """Peak of ``torch.cuda.max_memory_allocated`` (what the benchmark measures)."""
        return sum(self.parts.values())

    def table(self) -> str:
        rows = [f"  {name:<34} {gib:8.2f} GiB" for name, gib in self.parts.items()]
        rows.append(f"  {'allocated at the peak':<34} {self.allocated:8.2f} GiB")
        rows.append(f"  {'+ allocator slack, CUDA context':<34} {self.total:8.2f} GiB")
        return "\n".join(rows)


def lora_parameter_count(spec: ModelSpec, rank: int, targets: tuple[str, ...]) -> int:
    d, f = spec.dit.dim, spec.dit.ffn_dim
    per_target = {"q": 2 * (d + d), "k": 2 * (d + d), "v": 2 * (d + d), "o": 2 * (d + d),  # self + cross attention
                  "k_img": d + d, "v_img": d + d, "ffn.0": d + f, "ffn.2": f + d}
    per_block = sum(per_target[t] for t in targets if t in per_target)
    if not spec.dit.has_image_input:
        per_block -= sum(d + d for t in targets if t in ("k_img", "v_img"))
    return rank * per_block * spec.dit.num_layers


def vace_parameter_count(spec: ModelSpec) -> int:
    if spec.vace is None:
        return 0
    d, f = spec.dit.dim, spec.dit.ffn_dim
    block = 8 * d * d + 2 * d * f + (2 * d * d if spec.dit.has_image_input else 0) + 2 * d * d  # + before/after proj
    return len(spec.vace.layers) * block + spec.vace.in_dim * d * 4


def encoder_parameter_count(spec: ModelSpec) -> int:
    t = spec.text_encoder
    t5 = t.vocab * t.dim + t.num_layers * (4 * t.dim * t.dim_attn + 3 * t.dim * t.dim_ffn)
    vae = 127_000_000 * (spec.vae.dim / 96) ** 2
    clip = 0
    if spec.uses_clip:
        e = spec.image_encoder
        width = 1280
        clip = e.vision_layers * (4 * width * width + 2 * width * int(width * e.vision_mlp_ratio))
    return int(t5 + vae + clip)


def estimate(setup: Setup) -> Estimate:
    spec, n = setup.spec, setup.workers
    stage = setup.zero_stage if setup.engine == "deepspeed" else 0
    d, f, layers = spec.dit.dim, spec.dit.ffn_dim, spec.dit.num_layers
    dit_params = spec.dit.num_params()
    vace_params = vace_parameter_count(spec) if setup.uses_vace else 0
    parts: dict[str, float] = {}

    # Frozen and trainable parameter counts.
    if setup.method == "lora":
        trainable = lora_parameter_count(spec, setup.lora_rank, setup.lora_targets)
        frozen = dit_params + vace_params
    else:
        trainable = dit_params + (vace_params if setup.train_vace else 0)
        frozen = vace_params if not setup.train_vace else 0
    frozen_share = 1 / n if stage == 3 else 1.0
    if setup.offload_params:
        frozen_share = 0.0
    parts["frozen weights (bf16)"] = 2 * frozen * frozen_share / GIB
    if setup.other_experts_on_gpu:
        parts["other expert (bf16, frozen)"] = 2 * dit_params * setup.other_experts_on_gpu * frozen_share / GIB

    if setup.engine == "ddp":
        parts["trainable weights (fp32)"] = 4 * trainable / GIB
        parts["gradients (fp32)"] = 4 * trainable / GIB
        parts["AdamW states (fp32)"] = 8 * trainable / GIB
    else:
        parts["trainable weights (bf16)"] = 0.0 if setup.offload_params else 2 * trainable / (n if stage == 3 else 1) / GIB
        grads = 2 * trainable / (n if stage >= 2 else 1)
        parts["gradients (bf16)"] = 0.0 if (setup.offload_optimizer and stage >= 2) else grads / GIB
        opt = 12 * trainable / (n if stage >= 1 else 1)
        parts["fp32 master + AdamW (sharded)"] = 0.0 if setup.offload_optimizer else opt / GIB
        if stage >= 1 and setup.method == "full":
            parts["ZeRO buckets"] = 2 * 2 * 5e8 / GIB  # reduce bucket, double-buffered
        if stage == 3:
            largest_block = 8 * d * d + 2 * d * f + (2 * d * d if spec.dit.has_image_input else 0)
            parts["ZeRO-3 gathered layers"] = 2 * 2 * largest_block / GIB  # current + prefetched block

    if setup.encoders_on_gpu:
        parts["encoders (umT5, VAE, CLIP)"] = 2 * encoder_parameter_count(spec) / GIB

    tokens = setup.tokens * setup.batch  # activations are per token of every sample in the micro-batch
    block_layers = layers + (len(spec.vace.layers) if setup.uses_vace and spec.vace else 0)
    if setup.checkpointing:
        if not setup.checkpoint_offload:
            parts["checkpointed block inputs"] = block_layers * d * 2 * tokens / GIB
        if not setup.recompute_attention:
            parts["kept self-attention outputs"] = layers * d * 2 * tokens / GIB
        factor = BLOCK_FACTOR[setup.implementation]
        parts["one block's backward"] = factor * (BLOCK_DIM_TERMS * d + BLOCK_FFN_TERMS * f) * 2 * tokens / GIB
    else:
        parts["saved activations"] = block_layers * (SAVED_DIM_TERMS * d + SAVED_FFN_TERMS * f) * 2 * tokens / GIB
    parts["latents, head, loss"] = OUTSIDE_BLOCKS_PER_TOKEN * 4 * tokens / GIB
    return Estimate(parts=parts)


def usable_gib(card_gb: float) -> float:
    """GiB torch can use on a card sold as ``card_gb`` GB (an 80 GB H100: 79.6 GiB)."""
    return card_gb * CARD_USABLE_PER_GB


def fits(setup: Setup, card_gb: float) -> bool:
    return estimate(setup).total <= usable_gib(card_gb)


def max_frames(setup: Setup, card_gb: float, limit: int = 241) -> int | None:
    """The largest 4n+1 frame count (<= limit) whose estimate fits the card; None if not even 1 frame fits."""
    best = None
    for frames in range(1, limit + 1, 4):
        if fits(replace(setup, frames=frames), card_gb):
            best = frames
        else:
            break
    return best

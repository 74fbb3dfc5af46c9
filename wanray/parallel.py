"""Sequence parallel (Ulysses, through xDiT/yunchang) and CFG parallel for one generation over N processes.

One process per GPU (torchrun, or a Ray placement group in serving). Every process loads the model and
calls ``generate`` with the same request; the DiT's tokens are split over the ``ulysses_degree``
processes of a sequence-parallel group (attention heads are exchanged by all-to-all around each
self-attention), and with ``cfg_degree=2`` the positive and negative passes of classifier-free
guidance run on two groups at once. Every rank ends with the same frames.

Parallelism is applied to a built pipeline here; the model code stays DiffSynth's:

- each self-attention's ``attn`` submodule becomes ``UlyssesAttention`` (all-to-all, then our attention
  backend over the whole sequence for heads/P heads, then all-to-all back);
- RoPE slices its table for this rank's shard (``wanray.accel.rope_apply_fp32``);
- token chunking and the final gather are DiffSynth's own ``use_unified_sequence_parallel`` path;
- CFG parallel merges the two CFG passes into one batch of 2 (DiffSynth's ``cfg_merge``) and gives each
  CFG rank one element of it.

Why not PipeFusion (xDiT's patch-level pipeline parallelism): xfuser 0.7.0 cannot apply it to Wan. Its
Wan runner (``xfuser/model_executor/runner_models/wan.py``) leaves ``pipefusion_parallel_degree`` off, so
a degree > 1 is refused; its Wan transformer wrapper only splits the sequence (no stage split, no
stale-KV cache); its patch metadata for video ("Wan*" takes the HunyuanVideo branch) is a TODO; and
PipeFusion pipelines are registered only for PixArt, SD3, SDXL, Flux, HunyuanDiT, Sana and a few others.
Adding it would mean a Wan stage-split wrapper, per-patch 3-D RoPE slicing, a patch pipeline over frames
and, for Wan2.2, flushing the KV cache at the expert switch (xDiT issues 490, 500, 509 ask for it; none is
answered with an implementation). USP + CFG parallel, as here, is the path Wan's own repo and xDiT take.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from wanray import accel
from wanray.specs import ModelSpec

log = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class ParallelConfig:
    """How one generation is spread over processes (one per GPU).

    Attributes:
        ulysses_degree: sequence-parallel processes per CFG branch; must divide the DiT's attention heads.
        cfg_degree: 2 runs the conditional and unconditional passes side by side (needs cfg != 1).
    """

    ulysses_degree: int = 1
    cfg_degree: int = 1

    def __post_init__(self) -> None:
        if self.ulysses_degree < 1:
            raise ValueError(f"ulysses_degree must be >= 1, got {self.ulysses_degree}")
        if self.cfg_degree not in (1, 2):
            raise ValueError(f"cfg_degree must be 1 or 2, got {self.cfg_degree}")

    @property
    def world_size(self) -> int:
        return self.ulysses_degree * self.cfg_degree

    @classmethod
    def for_gpus(cls, gpus: int, use_cfg: bool = True) -> "ParallelConfig":
        """The usual split: CFG parallel over 2 when there are >= 2 GPUs and CFG is on, the rest Ulysses."""
        if use_cfg and gpus >= 2 and gpus % 2 == 0:
            return cls(ulysses_degree=gpus // 2, cfg_degree=2)
        return cls(ulysses_degree=gpus)


def check_parallel(parallel: ParallelConfig, spec: ModelSpec, world_size: int, gpus: int | None = None) -> None:
    """Validate degrees against processes, GPUs and the model's attention heads; errors show the arithmetic."""
    heads = spec.dit.num_heads
    if heads % parallel.ulysses_degree:
        raise ValueError(
            f"ulysses_degree ({parallel.ulysses_degree}) must divide the DiT's attention heads ({heads}): "
            f"{heads} % {parallel.ulysses_degree} = {heads % parallel.ulysses_degree}"
        )
    if parallel.world_size != world_size:
        raise ValueError(
            f"ulysses_degree ({parallel.ulysses_degree}) * cfg_degree ({parallel.cfg_degree}) = "
            f"{parallel.world_size} != WORLD_SIZE ({world_size})"
        )
    if gpus is not None and gpus and world_size > gpus:
        raise ValueError(f"WORLD_SIZE ({world_size}) processes need as many GPUs, but only {gpus} are visible")


def init_parallel(parallel: ParallelConfig, device: torch.device) -> None:
    """Join the process group (env:// variables as torchrun sets them) and build xDiT's groups."""
    import torch.distributed as dist
    from xfuser.core.distributed import init_distributed_environment, initialize_model_parallel

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    if device.type == "cuda":
        init_distributed_environment(rank=dist.get_rank(), world_size=dist.get_world_size(), backend=backend)
    else:
        # xDiT assumes CUDA whenever torch was built with it (it would call cuda.set_device); on CPU we
        # build its world group the way init_distributed_environment would, minus the device step.
        from xfuser.core.distributed import parallel_state

        if parallel_state._WORLD is None:
            ranks = list(range(dist.get_world_size()))
            parallel_state._WORLD = parallel_state.init_world_group(ranks, dist.get_rank(), backend)
    initialize_model_parallel(
        classifier_free_guidance_degree=parallel.cfg_degree,
        sequence_parallel_degree=parallel.ulysses_degree,
        ulysses_degree=parallel.ulysses_degree,
        ring_degree=1,
        backend=backend,
    )


def local_device() -> torch.device:
    """This process's GPU (LOCAL_RANK) or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


class UlyssesAttention(torch.nn.Module):
    """Replaces a self-attention's ``attn``: heads are all-to-all'd so each rank sees the whole sequence."""

    def __init__(self, num_heads: int, group):
        super().__init__()
        self.num_heads = num_heads
        self.group = group

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        from diffsynth.models import wan_video_dit
        from yunchang.comm.all_to_all import SeqAllToAll4D

        b, s_local, _ = q.shape
        world = torch.distributed.get_world_size(self.group)
        heads = self.num_heads // world

        def to_full_sequence(t):  # [B, S/P, n*d] -> [B, S, (n/P)*d]
            t = SeqAllToAll4D.apply(self.group, t.view(b, s_local, self.num_heads, -1), 2, 1)
            return t.flatten(2)

        q, k, v = (to_full_sequence(t) for t in (q, k, v))
        out = wan_video_dit.flash_attention(q, k, v, num_heads=heads)  # [B, S, (n/P)*d]
        out = SeqAllToAll4D.apply(self.group, out.view(b, out.shape[1], heads, -1), 1, 2)  # [B, S/P, n, d]
        return out.flatten(2)


class SequenceParallelVace(torch.nn.Module):
    """DiffSynth's VACE branch with its context chunked like the DiT's tokens."""

    def __init__(self, vace: torch.nn.Module):
        super().__init__()
        self.vace = vace
        self.vace_layers_mapping = vace.vace_layers_mapping

    def forward(self, x, vace_context, context, t_mod, freqs, **kwargs):
        from xfuser.core.distributed import get_sequence_parallel_rank, get_sequence_parallel_world_size

        world = get_sequence_parallel_world_size()
        full = x.shape[1] * world
        c = [self.vace.vace_patch_embedding(u.unsqueeze(0)).flatten(2).transpose(1, 2) for u in vace_context]
        c = torch.cat([torch.cat([u, u.new_zeros(1, full - u.size(1), u.size(2))], dim=1) for u in c])
        c = torch.chunk(c, world, dim=1)[get_sequence_parallel_rank()]
        for block in self.vace.vace_blocks:
            c = block(c, x, context, t_mod, freqs)
        return torch.unbind(c)[:-1]


# Tensors that DiffSynth's cfg_merge stacks as [positive, negative] along the batch.
_CFG_MERGED = ("context", "clip_feature", "y", "reference_latents")


class CfgParallelModelFn:
    """``pipe.model_fn`` for CFG parallel: each CFG rank runs one half of the merged batch, then all-gather."""

    def __init__(self, model_fn):
        self.model_fn = model_fn

    def __call__(self, **kwargs):
        from xfuser.core.distributed import get_cfg_group, get_classifier_free_guidance_rank

        rank = get_classifier_free_guidance_rank()
        mine = {
            k: (v[rank : rank + 1] if k in _CFG_MERGED and isinstance(v, torch.Tensor) and v.shape[0] == 2 else v)
            for k, v in kwargs.items()
        }
        mine["cfg_merge"] = False
        out = self.model_fn(**mine)  # [1, C, T, H, W]
        return get_cfg_group().all_gather(out.contiguous(), dim=0)  # [2, C, T, H, W]: positive, negative


def apply_parallel(pipe, parallel: ParallelConfig) -> None:
    """Make a built pipeline run across this process group (after ``init_parallel``)."""
    from xfuser.core.distributed import get_sequence_parallel_rank, get_sp_group

    if parallel.ulysses_degree > 1:
        group = get_sp_group().device_group
        accel.SP_STATE.update(rank=get_sequence_parallel_rank(), world=parallel.ulysses_degree)
        for model in (pipe.dit, pipe.dit2, pipe.vace, pipe.vace2):
            if model is None:
                continue
            blocks = model.blocks if hasattr(model, "blocks") else model.vace_blocks
            for block in blocks:
                block.self_attn.attn = UlyssesAttention(block.self_attn.num_heads, group)
        if pipe.vace is not None:
            pipe.vace = SequenceParallelVace(pipe.vace)
        if pipe.vace2 is not None:
            pipe.vace2 = SequenceParallelVace(pipe.vace2)
        pipe.use_unified_sequence_parallel = True
    if parallel.cfg_degree == 2:
        pipe.model_fn = CfgParallelModelFn(pipe.model_fn)
    log.info("parallel: ulysses %d x cfg %d", parallel.ulysses_degree, parallel.cfg_degree)

"""Flow-matching training objective with DiffSynth's Wan scheduler, and reproducible randomness.

The maths is DiffSynth's (``FlowMatchScheduler("Wan")`` in training mode: 1000 shifted timesteps,
``add_noise``, ``training_target`` = noise - x0, ``training_weight``), as its ``FlowMatchSFTLoss``
uses it. What differs: ``FlowMatchSFTLoss`` draws timestep and noise from the global RNG, so a
resumed run cannot replay them. Here every micro-step draws from its own generator seeded by
(run seed, optimizer step, rank, micro-step): a run resumed from step k draws exactly what an
uninterrupted run drew at step k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000


def step_generator(seed: int, step: int, rank: int, micro_step: int = 0) -> torch.Generator:
    """A CPU generator for one micro-step; the same arguments give the same stream on any machine."""
    state = np.random.SeedSequence([seed, step, rank, micro_step]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device="cpu").manual_seed(int(state[0]) << 32 | int(state[1]))


def expert_timestep_ids(timesteps: torch.Tensor, expert: str | None, boundary: float) -> tuple[int, int]:
    """[lo, hi) indices into the (descending) training timesteps that an expert trains on.

    Wan2.2's high-noise expert denoises timesteps >= boundary * 1000, the low-noise one the rest, as
    the pipeline switches experts at inference (``switch_DiT_boundary``). With shift 5 and boundary
    0.9 this is indices [0, 358) vs [358, 1000): DiffSynth's example scripts' 0.358 split.
    """
    n = len(timesteps)
    if expert is None:
        return 0, n
    split = int((timesteps >= boundary * NUM_TRAIN_TIMESTEPS).sum())
    if not 0 < split < n:
        raise ValueError(f"expert boundary {boundary} leaves one expert no timesteps")
    return (0, split) if expert == "high_noise" else (split, n)


@dataclass
class NoisedSample:
    timestep: torch.Tensor  # [B], in the compute dtype (as the pipeline passes it at inference)
    latents: torch.Tensor  # [B, 16, T', H/8, W/8] x0 noised to each sample's timestep
    target: torch.Tensor  # [B, 16, T', H/8, W/8] flow-matching velocity target
    weight: torch.Tensor  # [B] DiffSynth's per-timestep loss weight


class FlowMatching:
    """DiffSynth's Wan scheduler in training mode, restricted to one expert's timesteps if asked."""

    def __init__(self, expert: str | None = None, boundary: float = 0.9):
        from diffsynth.diffusion.flow_match import FlowMatchScheduler

        self.scheduler = FlowMatchScheduler("Wan")
        self.scheduler.set_timesteps(NUM_TRAIN_TIMESTEPS, training=True)
        self.id_range = expert_timestep_ids(self.scheduler.timesteps, expert, boundary)

    def noise(self, x0: torch.Tensor, generator: torch.Generator, dtype: torch.dtype) -> NoisedSample:
        """Each of the batch's samples gets its own timestep (the batch covers the noise levels, as separate
        steps would); with a batch of one the draws are the same as DiffSynth's per-sample training."""
        lo, hi = self.id_range
        timestep_ids = torch.randint(lo, hi, (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
        timesteps = self.scheduler.timesteps[timestep_ids]
        s = self.scheduler  # its add_noise and training_weight take one timestep: apply them per sample
        latents = torch.cat([s.add_noise(x0[i : i + 1], noise[i : i + 1], t) for i, t in enumerate(timesteps)])
        return NoisedSample(
            timestep=timesteps.to(dtype=dtype, device=x0.device),
            latents=latents,
            target=s.training_target(x0, noise, timesteps),
            weight=torch.stack([s.training_weight(t) for t in timesteps]),
        )

    def loss(self, prediction: torch.Tensor, sample: NoisedSample) -> torch.Tensor:
        """DiffSynth's loss, weighted MSE in float32, per sample; the batch's mean."""
        mse = (prediction.float() - sample.target.float()).pow(2).flatten(1).mean(dim=1)  # [B]
        return (mse * sample.weight.to(mse.device)).mean()

"""Samplers: how a denoising step moves the latents, and the few-step settings of step-distilled LoRAs.

- ``euler``: DiffSynth's flow-matching Euler step ``x + v * (sigma_next - sigma)``, deterministic. The
  base models sample with it, and so do Wan2.2's step-distilled LoRAs (LightX2V's Wan2.2 4-step sampler
  is the same update).
- ``renoise``: predict the clean latent ``x0 = x - sigma * v``, then noise it again to the next sigma with
  fresh noise, ``(1 - sigma_next) * x0 + sigma_next * eps``; the last step returns ``x0``. Wan2.1's
  step-and-CFG-distilled LoRAs (LightX2V, DMD / self-forcing) were trained for this update, and an Euler
  step makes their 4-step videos soft. The noise is drawn from its own CPU generator seeded from the
  request, so a seed gives the same video on every device and on every rank of a parallel group.

Both keep DiffSynth's timesteps: 4 steps at shift 5 are sigmas shift([1, 0.75, 0.5, 0.25]), exactly the
``denoising_step_list [1000, 750, 500, 250]`` those LoRAs use.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from wanray.config import GenerationConfig
    from wanray.specs import ModelSpec

SAMPLERS = ("euler", "renoise")
FEW_STEPS = 4
FEW_STEP_SHIFT = 5.0


class ReNoiseScheduler:
    """DiffSynth's Wan flow-matching scheduler with the re-noising step (see the module docstring).

    Everything but ``step`` (timesteps, sigmas, ``set_timesteps``) is DiffSynth's own scheduler's.
    """

    def __init__(self, seed: int):
        from diffsynth.diffusion.flow_match import FlowMatchScheduler

        self._base = FlowMatchScheduler("Wan")
        self.generator = torch.Generator("cpu").manual_seed(seed)

    def __getattr__(self, name: str):
        if name == "_base":  # not set yet
            raise AttributeError(name)
        return getattr(self._base, name)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, to_final: bool = False, **kwargs):
        if isinstance(timestep, torch.Tensor):
            timestep = timestep.cpu()
        index = int(torch.argmin((self.timesteps - timestep).abs()))
        x0 = sample.float() - float(self.sigmas[index]) * model_output.float()  # [B, C, T, H, W]
        if to_final or index + 1 >= len(self.timesteps):
            return x0.to(sample.dtype)
        sigma_next = float(self.sigmas[index + 1])
        noise = torch.randn(sample.shape, generator=self.generator, dtype=torch.float32).to(sample.device)
        return ((1 - sigma_next) * x0 + sigma_next * noise).to(sample.dtype)


@contextlib.contextmanager
def sampler_installed(pipe, sampler: str, seed: int):
    """Run ``pipe`` with ``sampler``'s scheduler, then put DiffSynth's own back."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler == "euler":
        yield
        return
    original = pipe.scheduler
    # a seed of its own: the re-noising draws must not repeat the initial noise drawn from `seed`
    pipe.scheduler = ReNoiseScheduler(seed=seed + 1)
    try:
        yield
    finally:
        pipe.scheduler = original


def few_step(config: GenerationConfig, spec: ModelSpec) -> GenerationConfig:
    """``config`` with the settings published 4-step distillation LoRAs are made for (load the LoRA too).

    4 steps, no classifier-free guidance (the LoRAs are CFG-distilled: one pass per step), shift 5, and the
    sampler of the model family: ``renoise`` for Wan2.1, ``euler`` for Wan2.2's two experts (2 steps each
    with the 0.9 boundary).
    """
    sampler = "euler" if spec.expert_dirs else "renoise"
    return dataclasses.replace(config, steps=FEW_STEPS, cfg=1.0, sigma_shift=FEW_STEP_SHIFT, sampler=sampler)

"""One micro-step of training, shared by the Ray Train loop and the benchmarks."""

from __future__ import annotations

import torch

from wanray.training.flow import FlowMatching, step_generator


def micro_step(engine, flow: FlowMatching, inputs: dict[str, torch.Tensor], *, seed: int, step: int, rank: int,
               micro: int, grad_accum: int, dtype: torch.dtype, boundary: bool, loss_divisor: int) -> float:
    """Noise ``inputs["input_latents"]`` with the step's own generator, predict, backward, maybe step.

    ``inputs``: ``input_latents`` [B, 16, T', H/8, W/8] plus the DiT's conditioning (``context``, ``y``,
    ``clip_feature``, ``vace_context``), batch dim B. Returns the (undivided) loss, the batch's mean.
    """
    inputs = dict(inputs)
    x0 = inputs.pop("input_latents")
    noised = flow.noise(x0, step_generator(seed, step, rank, micro), dtype)
    with engine.accumulate(boundary):
        prediction = engine.forward(latents=noised.latents, timestep=noised.timestep, **inputs)
        loss = flow.loss(prediction, noised)
        engine.backward(loss / loss_divisor)
    engine.step(boundary)
    return float(loss.detach())

"""Samplers: the re-noising step's arithmetic, its seeding, and the few-step settings per model family."""

import numpy as np
import pytest
import torch

from wanray.config import GenerationConfig, LoraRef
from wanray.inputs import InvalidInput
from wanray.sampling import ReNoiseScheduler, few_step, sampler_installed
from wanray.specs import embedded
from wanray.video import frames_to_array

SHAPE = (1, 4, 3, 6, 5)  # [B, C, T, H, W]


def _scheduler(seed, steps=4):
    scheduler = ReNoiseScheduler(seed=seed)
    scheduler.set_timesteps(steps, shift=5.0)
    return scheduler


def test_four_steps_at_shift_5_are_the_distillation_timesteps():
    # LightX2V's denoising_step_list [1000, 750, 500, 250], shifted by 5
    s = torch.tensor([1.0, 0.75, 0.5, 0.25])
    assert torch.allclose(_scheduler(0).sigmas, 5 * s / (1 + 4 * s))


def test_a_step_predicts_the_clean_latent_and_renoises_it_with_seeded_noise():
    seed = int(torch.randint(0, 2**31, ()))
    scheduler = _scheduler(seed)
    x0, eps = torch.randn(SHAPE), torch.randn(SHAPE)
    sigma, sigma_next = scheduler.sigmas[1], scheduler.sigmas[2]
    x = (1 - sigma) * x0 + sigma * eps
    velocity = eps - x0  # the exact flow-matching prediction
    stepped = scheduler.step(velocity, scheduler.timesteps[1], x)
    fresh = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(stepped, (1 - sigma_next) * x0 + sigma_next * fresh, atol=1e-5)
    # the last step returns the clean latent itself, with no new noise
    last = scheduler.sigmas[-1]
    x_last = (1 - last) * x0 + last * eps
    assert torch.allclose(scheduler.step(eps - x0, scheduler.timesteps[-1], x_last), x0, atol=1e-5)


def test_the_same_seed_gives_the_same_trajectory():
    x0 = torch.randn(SHAPE)

    def run(seed):
        scheduler, x = _scheduler(seed), torch.randn(SHAPE, generator=torch.Generator().manual_seed(99))
        path = []
        for i, t in enumerate(scheduler.timesteps):
            velocity = (x - x0) / scheduler.sigmas[i]  # an oracle that knows x0
            x = scheduler.step(velocity, t, x)
            path.append(x)
        return path

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert torch.allclose(a[-1], x0, atol=1e-5) and torch.allclose(c[-1], x0, atol=1e-5)


def test_few_step_settings_follow_the_model_family(tiny_moe_spec, tmp_path):
    lora = LoraRef(path=tmp_path / "distill.safetensors")
    config = GenerationConfig(image="p.png", prompt="x", seed=3, frames=17, loras=(lora,))
    wan21 = few_step(config, embedded())
    assert (wan21.steps, wan21.cfg, wan21.sigma_shift, wan21.sampler) == (4, 1.0, 5.0, "renoise")
    assert (wan21.seed, wan21.frames, wan21.loras) == (3, 17, (lora,))
    assert few_step(config, tiny_moe_spec).sampler == "euler"


def test_installing_a_sampler_always_puts_the_pipeline_scheduler_back():
    class Pipe:
        scheduler = object()

    pipe, original = Pipe(), Pipe.scheduler
    with pytest.raises(RuntimeError, match="boom"), sampler_installed(pipe, "renoise", seed=1):
        assert isinstance(pipe.scheduler, ReNoiseScheduler)
        raise RuntimeError("boom")
    assert pipe.scheduler is original
    with pytest.raises(ValueError, match="unknown sampler 'ddim'; choose one of euler, renoise"), \
            sampler_installed(pipe, "ddim", seed=1):
        pass


def test_renoise_generation_is_seeded_and_differs_from_euler(embedded_generator, photo):
    scheduler = embedded_generator.pipe.scheduler

    def gen(**kw):
        config = GenerationConfig(image=photo, prompt="a girl dances", height=64, width=64, frames=5, steps=4, cfg=1.0,
                                  **kw)
        result = embedded_generator.generate(config)
        return frames_to_array(result.frames), result.info

    renoise, info = gen(seed=7, sampler="renoise")
    again, _ = gen(seed=7, sampler="renoise")
    euler, _ = gen(seed=7)
    assert info["sampler"] == "renoise" and info["steps"] == 4
    assert np.array_equal(renoise, again) and not np.array_equal(renoise, euler)
    assert embedded_generator.pipe.scheduler is scheduler
    with pytest.raises(InvalidInput, match="sampler must be one of euler, renoise, got 'lcm'"):
        gen(seed=7, sampler="lcm")

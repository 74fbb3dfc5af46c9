"""Flow matching: reproducible per-step randomness, expert timestep ranges, and a loss that falls."""

import numpy as np
import pytest
import torch
from PIL import Image

from wanray.training.flow import FlowMatching, NoisedSample, expert_timestep_ids, step_generator


def test_step_generator_is_a_pure_function_of_its_arguments():
    a = torch.randn(5, generator=step_generator(3, 10, 1, 0))
    torch.manual_seed(123)  # the global RNG does not matter
    b = torch.randn(5, generator=step_generator(3, 10, 1, 0))
    assert torch.equal(a, b)
    for other in [(4, 10, 1, 0), (3, 11, 1, 0), (3, 10, 0, 0), (3, 10, 1, 1)]:
        assert not torch.equal(a, torch.randn(5, generator=step_generator(*other)))


def test_wan22_experts_split_the_timesteps_at_the_boundary():
    flow = FlowMatching()
    t = flow.scheduler.timesteps
    hi = expert_timestep_ids(t, "high_noise", 0.9)
    lo = expert_timestep_ids(t, "low_noise", 0.9)
    assert hi[0] == 0 and hi[1] == lo[0] and lo[1] == 1000
    assert hi[1] == 358  # DiffSynth's example split for Wan2.2 I2V (max_timestep_boundary 0.358)
    assert t[: hi[1]].min() >= 900 and t[lo[0]:].max() < 900
    x0 = torch.randn(1, 16, 2, 4, 4)
    high = FlowMatching("high_noise", 0.9)
    low = FlowMatching("low_noise", 0.9)
    for step in range(20):
        assert float(high.noise(x0, step_generator(0, step, 0), torch.float32).timestep) >= 900
        assert float(low.noise(x0, step_generator(0, step, 0), torch.float32).timestep) < 900


def test_noising_is_diffsynths_flow_matching():
    flow = FlowMatching()
    x0 = torch.randn(1, 16, 2, 4, 4)
    s = flow.noise(x0, step_generator(1, 2, 0), torch.float32)
    again = flow.noise(x0, step_generator(1, 2, 0), torch.float32)
    assert torch.equal(s.latents, again.latents) and torch.equal(s.timestep, again.timestep)
    sigma = float(s.timestep) / 1000
    noise = s.target + x0  # target = noise - x0
    assert torch.allclose(s.latents, (1 - sigma) * x0 + sigma * noise, atol=1e-5)


def test_a_batch_draws_one_timestep_per_sample_and_noises_each_with_its_own():
    flow = FlowMatching()
    x0 = torch.randn(6, 16, 2, 4, 4)
    s = flow.noise(x0, step_generator(4, 1, 0), torch.float32)
    assert s.timestep.shape == s.weight.shape == (6,) and len(set(s.timestep.tolist())) > 1
    noise = s.target + x0
    for i, t in enumerate(s.timestep):
        assert torch.allclose(s.latents[i], (1 - float(t) / 1000) * x0[i] + float(t) / 1000 * noise[i], atol=1e-5)
        assert torch.equal(s.weight[i], flow.scheduler.training_weight(t))


def test_a_batched_step_is_the_mean_of_its_samples_steps_on_the_embedded_model():
    """Stacking samples into one forward mixes nothing between them: the batch's predictions and loss are
    each sample's own, as if they were run one at a time."""
    from wanray.encoding import TrainingSample, encode_sample
    from wanray.training.model import build_training_model
    from wanray.training.presets import embedded_full

    model = build_training_model(embedded_full(), torch.device("cpu"))
    rng = np.random.default_rng()
    each = []
    for b in range(3):
        frames = [Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")) for _ in range(5)]
        each.append(encode_sample(model.generator.pipe, TrainingSample(
            video=frames, prompt=f"a dancer number {b}", input_image=frames[0], vace_video=frames)))
    batch = {k: torch.cat([e[k] for e in each]) for k in each[0]}
    x0 = batch.pop("input_latents")
    flow = FlowMatching()
    s = flow.noise(x0, step_generator(int(rng.integers(1000)), 0, 0), torch.float32)
    with torch.no_grad():
        prediction = model.module(latents=s.latents, timestep=s.timestep, **batch)
        losses = []
        for i in range(3):
            one = NoisedSample(timestep=s.timestep[i : i + 1], latents=s.latents[i : i + 1],
                               target=s.target[i : i + 1], weight=s.weight[i : i + 1])
            alone = model.module(latents=one.latents, timestep=one.timestep, **{k: v[i : i + 1] for k, v in batch.items()})
            assert torch.allclose(prediction[i : i + 1], alone, atol=1e-4), float((prediction[i] - alone).abs().max())
            losses.append(float(flow.loss(alone, one)))
        assert float(flow.loss(prediction, s)) == pytest.approx(np.mean(losses), rel=1e-4)


def test_loss_falls_over_a_few_dozen_steps_on_the_embedded_model():
    """30 LoRA steps on one clip: the loss at fixed held-out (timestep, noise) pairs drops clearly."""
    from wanray.encoding import TrainingSample, encode_sample
    from wanray.training.model import build_training_model
    from wanray.training.presets import embedded_lora_smoke

    model = build_training_model(embedded_lora_smoke(), torch.device("cpu"))
    rng = np.random.default_rng()
    base = rng.random((64, 64, 3)) * 255
    frames = [Image.fromarray(np.roll(base, 6 * i, axis=1).astype("uint8")) for i in range(5)]
    inputs = encode_sample(model.generator.pipe, TrainingSample(video=frames, prompt="a dancer", input_image=frames[0],
                                                                vace_video=frames))
    x0 = inputs.pop("input_latents")
    flow = FlowMatching()
    params = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)

    def held_out_loss() -> float:
        with torch.no_grad():
            losses = []
            for k in range(6):
                s = flow.noise(x0, step_generator(999, k, 0), torch.float32)
                losses.append(float(flow.loss(model.module(latents=s.latents, timestep=s.timestep, **inputs), s)))
            return float(np.mean(losses))

    before = held_out_loss()
    for step in range(30):
        s = flow.noise(x0, step_generator(0, step, 0), torch.float32)
        flow.loss(model.module(latents=s.latents, timestep=s.timestep, **inputs), s).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = held_out_loss()
    assert after < 0.8 * before, (before, after)

"""strategy.compile: the DiT blocks are torch.compiled (regionally) and train exactly as eager ones do."""

import numpy as np
import torch
from PIL import Image

from wanray.training.config import apply_overrides
from wanray.training.flow import FlowMatching, step_generator
from wanray.training.presets import embedded_lora_smoke


def test_compiled_blocks_give_the_eager_loss_and_gradients(tmp_path, monkeypatch):
    from wanray.encoding import TrainingSample, encode_sample
    from wanray.training.model import build_training_model

    monkeypatch.setenv("WANRAY_COMPILE_CACHE", str(tmp_path / "inductor"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    eager = build_training_model(embedded_lora_smoke(), torch.device("cpu"))
    compiled = build_training_model(apply_overrides(embedded_lora_smoke(), ["strategy.compile=true"]),
                                    torch.device("cpu"))
    assert all(block._compiled_call_impl is not None for block in compiled.module.dit.blocks)
    assert all(block._compiled_call_impl is None for block in eager.module.dit.blocks)

    rng = np.random.default_rng()
    frames = [Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")) for _ in range(5)]
    inputs = encode_sample(eager.generator.pipe, TrainingSample(video=frames, prompt="a dancer",
                                                                input_image=frames[0], vace_video=frames))
    x0 = inputs.pop("input_latents")
    sample = FlowMatching().noise(x0, step_generator(int(rng.integers(1000)), 0, 0), torch.float32)
    results = []
    for model in (eager, compiled):
        loss = FlowMatching().loss(model.module(latents=sample.latents, timestep=sample.timestep, **inputs), sample)
        loss.backward()
        grads = [p.grad.clone() for p in model.module.parameters() if p.requires_grad]
        results.append((float(loss.detach()), grads))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    assert abs(eager_loss - compiled_loss) <= 1e-4 * abs(eager_loss)
    assert len(eager_grads) == len(compiled_grads) > 0
    for a, b in zip(eager_grads, compiled_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    assert (tmp_path / "inductor").is_dir()  # the on-disk cache a restarted worker reuses

"""FP8 compute on a real float8 GPU (compute capability >= 8.9): pytest -m gpu tests/gpu/test_fp8_gpu.py"""

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def float8_gpu():
    import torchao.float8  # noqa: F401  (wanray[fp8]: a missing torchao fails here, it is not skipped)

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("needs a CUDA GPU of compute capability >= 8.9")


def test_generation_with_fp8_compute_passes_the_acceleration_gate(photo):
    from wanray.config import GenerationConfig, ModelConfig
    from wanray.generation import WanGenerator
    from wanray.metrics import acceleration_gate
    from wanray.video import frames_to_array

    request = GenerationConfig(image=photo, prompt="a girl dances the wave", height=128, width=128, frames=17, steps=4)
    reference = frames_to_array(WanGenerator.load(ModelConfig(device="cuda")).generate(request).frames)
    result = WanGenerator.load(ModelConfig(device="cuda", fp8_compute=True)).generate(request)
    gate = acceleration_gate(frames_to_array(result.frames), reference)
    assert gate.passed, gate.reasons


def test_fp8_lora_step_stays_close_to_bf16():
    from wanray.encoding import TrainingSample, encode_sample
    from wanray.training.config import apply_overrides
    from wanray.training.flow import FlowMatching, step_generator
    from wanray.training.model import build_training_model
    from wanray.training.presets import embedded_lora_smoke

    device = torch.device("cuda")
    gpu = ["scaling.use_gpu=true", "strategy.precision=bf16"]
    reference = build_training_model(apply_overrides(embedded_lora_smoke(), gpu), device)
    fp8 = build_training_model(apply_overrides(embedded_lora_smoke(), [*gpu, "strategy.fp8=true"]), device)
    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")) for _ in range(5)]
    inputs = encode_sample(reference.generator.pipe, TrainingSample(video=frames, prompt="a dancer",
                                                                    input_image=frames[0], vace_video=frames))
    x0 = inputs.pop("input_latents")
    sample = FlowMatching().noise(x0, step_generator(3, 0, 0), torch.bfloat16)
    grads = []
    for model in (reference, fp8):
        loss = FlowMatching().loss(model.module(latents=sample.latents, timestep=sample.timestep, **inputs), sample)
        loss.backward()
        grads.append(torch.cat([p.grad.float().flatten() for p in model.module.parameters() if p.requires_grad]))
    assert torch.isfinite(grads[1]).all()
    assert torch.nn.functional.cosine_similarity(*grads, dim=0) > 0.98  # bf16 vs float8 rounding (CPU test: 0.998)

import numpy as np
import pytest
import torch
from PIL import Image

from wanray.training.flow import FlowMatching, step_generator


@pytest.fixture
def loss_and_grads():
    """``f(models) -> [(loss, [grads])]``: one flow-matching loss and backward of each training model on the same
    fresh random 5-frame 32x32 sample (I2V + VACE), encoded by the first model's pipeline."""
    from wanray.encoding import TrainingSample, encode_sample

    def run(models):
        rng = np.random.default_rng()
        frames = [Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")) for _ in range(5)]
        inputs = encode_sample(models[0].generator.pipe, TrainingSample(video=frames, prompt="a dancer",
                                                                        input_image=frames[0], vace_video=frames))
        x0 = inputs.pop("input_latents")
        sample = FlowMatching().noise(x0, step_generator(int(rng.integers(1000)), 0, 0), torch.float32)
        results = []
        for model in models:
            loss = FlowMatching().loss(model.module(latents=sample.latents, timestep=sample.timestep, **inputs),
                                       sample)
            loss.backward()
            results.append((float(loss.detach()), [p.grad.clone() for p in model.module.parameters()
                                                    if p.requires_grad]))
        return results

    return run

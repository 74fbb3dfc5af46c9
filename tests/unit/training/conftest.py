"""Training-test fixtures. ``loss_and_grads`` and ``fp8_vs_fp32`` are plain functions too, so that
``bench/fp8_grad_error.py`` measures exactly what ``test_fp8.py`` asserts on."""

import numpy as np
import pytest
import torch
from PIL import Image

from wanray.training.flow import FlowMatching, step_generator


def random_sample(pipe, seed: int | None = None):
    """A random 5-frame 32x32 training sample (I2V + VACE) encoded by ``pipe``, noised to a random timestep:
    ``(inputs, NoisedSample)``. ``seed`` fixes frames, timestep and noise; ``None`` draws a fresh one."""
    from wanray.encoding import TrainingSample, encode_sample

    rng = np.random.default_rng(seed)
    frames = [Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")) for _ in range(5)]
    inputs = encode_sample(pipe, TrainingSample(video=frames, prompt="a dancer", input_image=frames[0],
                                                vace_video=frames))
    x0 = inputs.pop("input_latents")
    return inputs, FlowMatching().noise(x0, step_generator(int(rng.integers(1000)), 0, 0), torch.float32)


def loss_and_grads(models, seed: int | None = None, drawn=None) -> list[tuple[float, list[torch.Tensor]]]:
    """One flow-matching loss and backward of each training model on the same ``random_sample(seed)`` (or the
    ``drawn`` one), encoded by the first model's pipeline: ``[(loss, [grads of the trainable parameters])]``."""
    inputs, sample = drawn or random_sample(models[0].generator.pipe, seed)
    results = []
    for model in models:
        model.module.zero_grad(set_to_none=True)  # a model may be measured on several samples
        loss = FlowMatching().loss(model.module(latents=sample.latents, timestep=sample.timestep, **inputs), sample)
        loss.backward()
        results.append((float(loss.detach()), [p.grad.clone() for p in model.module.parameters()
                                                if p.requires_grad]))
    return results


def fp8_vs_fp32(reference, fp8, seed: int | None = None) -> dict:
    """How far the FP8 model's LoRA step is from the float32 one on one sample: ``loss`` (relative difference),
    ``grad`` (relative L2 error of all trainable gradients, concatenated), ``cosine``; the ``timestep`` drawn,
    the raw ``ref_loss``/``fp8_loss``, and per-tensor ``ref_grads``/``fp8_grads`` (in ``reference.trainable``
    order) for a breakdown."""
    drawn = random_sample(reference.generator.pipe, seed)
    (ref_loss, ref_grads), (fp8_loss, fp8_grads) = loss_and_grads([reference, fp8], drawn=drawn)
    ref, low = torch.cat([g.flatten() for g in ref_grads]), torch.cat([g.flatten() for g in fp8_grads])
    nan = float("nan")  # at timestep 1000 (1 draw in 1000) DiffSynth's loss weight is 0: no loss, no gradient
    return {
        "loss": abs(fp8_loss - ref_loss) / abs(ref_loss) if ref_loss else nan,
        "grad": ((low - ref).norm() / ref.norm()).item() if ref.norm() else nan,
        "cosine": torch.nn.functional.cosine_similarity(low, ref, dim=0).item(),
        "timestep": float(drawn[1].timestep[0]),
        "finite": bool(np.isfinite(fp8_loss) and torch.isfinite(low).all()),
        "ref_loss": ref_loss, "fp8_loss": fp8_loss, "ref_grads": ref_grads, "fp8_grads": fp8_grads,
    }


@pytest.fixture(name="loss_and_grads")
def loss_and_grads_fixture():
    """``loss_and_grads`` above, on a fresh random sample unless given a seed."""
    return loss_and_grads


@pytest.fixture(name="fp8_vs_fp32")
def fp8_vs_fp32_fixture():
    return fp8_vs_fp32

"""encode_sample: the frozen-encoder tensors training and the latent cache share."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from wanray.encoding import TrainingSample, encode_sample, encode_samples, usable_inputs


@pytest.fixture(scope="module")
def training_generator():
    """The embedded model as training loads it: the VAE in the training dtype (float32 here), whose batched and
    one-at-a-time encodes agree to float32 rounding (a bfloat16 VAE's differ by its rounding)."""
    from wanray import ModelConfig
    from wanray.generation import WanGenerator

    return WanGenerator.load(ModelConfig(model="embedded", device="cpu", dtype="float32", vae_dtype="float32"))


def _frames(n=5, size=64):
    rng = np.random.default_rng()
    return [Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")) for _ in range(n)]


def _sample(**kw):
    frames = _frames()
    return TrainingSample(video=frames, prompt="a girl dances the wave", input_image=frames[0], **kw)


def test_a_model_gets_only_the_conditioning_it_takes():
    pose = _frames()
    sample = _sample(vace_video=pose, control_video=pose, vace_reference_image=pose[0])
    vace_i2v = usable_inputs(SimpleNamespace(dit=SimpleNamespace(in_dim=36), vace=object()), sample)
    assert vace_i2v.control_video is None and vace_i2v.vace_video is pose and vace_i2v.input_image is not None
    plain_i2v = usable_inputs(SimpleNamespace(dit=SimpleNamespace(in_dim=36), vace=None), sample)
    assert plain_i2v.control_video is None and plain_i2v.vace_video is None and plain_i2v.vace_reference_image is None
    fun_control = usable_inputs(SimpleNamespace(dit=SimpleNamespace(in_dim=48), vace=None), sample)
    assert fun_control.control_video is pose


def test_shapes_and_a_control_video_never_overwrites_the_first_frame_latents(training_generator):
    pipe = training_generator.pipe
    sample = _sample(vace_video=_frames())
    plain = encode_sample(pipe, sample)
    assert {k: tuple(v.shape) for k, v in plain.items()} == {
        "input_latents": (1, 16, 2, 8, 8), "context": (1, 64, 128), "y": (1, 20, 2, 8, 8),
        "clip_feature": (1, 257, 1280), "vace_context": (1, 96, 2, 8, 8)}
    with_control = encode_sample(pipe, TrainingSample(**{**sample.__dict__, "control_video": _frames()}))
    assert torch.equal(plain["y"], with_control["y"])
    assert pipe.scheduler.training is False  # generation afterwards is unaffected


def test_frame_count_must_be_4n_plus_1():
    with pytest.raises(ValueError, match="4n\\+1"):
        TrainingSample(video=_frames(4), prompt="x")


def test_batched_encoding_equals_one_sample_at_a_time_and_batches_the_vae(training_generator, monkeypatch):
    pipe = training_generator.pipe
    before = vars(pipe.vae).get("encode")  # generation's own wrapper (accel.memoize_zero_clip_encodes)
    # mixed shapes (5 and 9 frames) and one sample without a VACE video: calls are grouped, none waits forever
    samples = [_sample(vace_video=_frames()), _sample(),
               TrainingSample(video=_frames(9), prompt="a boy dances the robot", input_image=_frames(1)[0],
                              vace_video=_frames(9)), _sample(vace_video=_frames())]
    alone = [encode_sample(pipe, s) for s in samples]
    model_calls = []
    encode = type(pipe.vae.model).encode
    monkeypatch.setattr(type(pipe.vae.model), "encode",
                        lambda self, x, scale: model_calls.append(x.shape[0]) or encode(self, x, scale))
    together = encode_samples(pipe, samples)
    assert [sorted(t) for t in together] == [sorted(a) for a in alone]
    for a, t in zip(alone, together):
        for k in a:
            torch.testing.assert_close(t[k], a[k], rtol=1e-4, atol=1e-5)
    # VAE inputs per sample: target, first frame, and VACE's two, of which the all-zero inactive clip (a pose
    # video has no mask) is encoded once per frame count (two 5-frame ones here); batched into fewer, larger calls
    assert sum(model_calls) == sum(1 + 1 + (1 if s.vace_video else 0) for s in samples) + 2  # 5 and 9 frames
    assert max(model_calls) > 1 and len(model_calls) < sum(model_calls)
    assert pipe.scheduler.training is False and vars(pipe.vae).get("encode") is before


def test_a_failing_sample_fails_the_batch_without_hanging(training_generator):
    before = vars(training_generator.pipe.vae).get("encode")
    broken = _sample()
    broken.input_image = "not an image"  # the image unit raises inside one thread while the others wait in the VAE
    with pytest.raises(AttributeError, match="str"):
        encode_samples(training_generator.pipe, [_sample(), broken, _sample()])
    assert vars(training_generator.pipe.vae).get("encode") is before

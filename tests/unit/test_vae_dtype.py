"""The VAE in its own dtype: bfloat16 inside a float32 CPU pipeline where that is faster."""

import numpy as np
import pytest
import torch

from wanray import accel
from wanray.generation import resolve_model, resolve_vae_dtype
from wanray.loading import load_model_dir

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def embedded_vaes():
    """Two copies of the embedded VAE: float32 as loaded, and bfloat16 behind ``run_vae_in``."""
    fp32, bf16 = (load_model_dir(*resolve_model("embedded")).vae for _ in range(2))
    accel.run_vae_in(bf16, torch.bfloat16)
    return fp32, bf16


@pytest.mark.parametrize("tiled", [False, True])
def test_a_bfloat16_vae_takes_and_returns_the_pipelines_float32_and_stays_close(embedded_vaes, tiled):
    fp32, bf16 = embedded_vaes
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    tiles = dict(tiled=True, tile_size=(4, 4), tile_stride=(2, 2)) if tiled else {}
    video = torch.rand(3, 5, 48, 48) * 2 - 1  # [C, T, H, W] in [-1, 1], fresh each run
    with torch.no_grad():
        z32, z16 = fp32.encode([video], CPU, **tiles), bf16.encode([video], CPU, **tiles)  # [1, 16, 2, 6, 6]
        x32, x16 = fp32.decode(z32, CPU, **tiles), bf16.decode(z32, CPU, **tiles)  # [1, 3, 5, 48, 48]
    assert z16.dtype == x16.dtype == torch.float32 and z16.shape == z32.shape and x16.shape == x32.shape
    assert not torch.equal(z16, z32)  # the arithmetic really ran in bfloat16
    assert (z16 - z32).norm() / z32.norm() < 0.03  # bf16 rounding (8 bits of mantissa), not another code
    assert (x16 - x32).abs().mean() < 0.02  # of a [-1, 1] range


def test_auto_takes_bfloat16_only_for_a_float32_cpu_pipeline_where_it_is_faster(monkeypatch):
    for faster in (True, False):
        monkeypatch.setattr(accel, "bf16_beats_fp32_on_this_cpu", lambda: faster)
        assert resolve_vae_dtype("auto", CPU, torch.float32) == (torch.bfloat16 if faster else torch.float32)
    monkeypatch.setattr(accel, "bf16_beats_fp32_on_this_cpu", lambda: pytest.fail("timed off the float32 CPU path"))
    assert resolve_vae_dtype("auto", CUDA, torch.bfloat16) == torch.bfloat16
    assert resolve_vae_dtype("auto", CUDA, torch.float32) == torch.float32
    assert resolve_vae_dtype("auto", CPU, torch.bfloat16) == torch.bfloat16
    assert resolve_vae_dtype("float32", CPU, torch.float32) == torch.float32  # an explicit choice is not timed
    assert resolve_vae_dtype("float32", CUDA, torch.bfloat16) == torch.float32
    with pytest.raises(ValueError, match="vae_dtype must be auto, bfloat16, float16 or float32, got 'fp16'"):
        resolve_vae_dtype("fp16", CPU, torch.float32)


def test_the_dtype_timing_gives_an_answer_once_per_process():
    accel.bf16_beats_fp32_on_this_cpu.cache_clear()
    first = accel.bf16_beats_fp32_on_this_cpu()
    assert isinstance(first, bool) and accel.bf16_beats_fp32_on_this_cpu() is first
    assert accel.bf16_beats_fp32_on_this_cpu.cache_info().hits == 1


def test_generation_reports_and_uses_the_vae_dtype_it_was_given(photo):
    from wanray import GenerationConfig, ModelConfig
    from wanray.generation import WanGenerator
    from wanray.video import frames_to_array

    config = GenerationConfig(image=photo, prompt="a girl dances the wave", height=64, width=64, frames=5, steps=1,
                              seed=int(np.random.default_rng().integers(1 << 30)))
    results = {}
    for vae_dtype in ("float32", "bfloat16"):
        generator = WanGenerator.load(ModelConfig(device="cpu", vae_dtype=vae_dtype))
        assert next(generator.pipe.vae.model.parameters()).dtype == getattr(torch, vae_dtype)
        assert next(generator.pipe.dit.parameters()).dtype == torch.float32  # only the VAE changes
        results[vae_dtype] = generator.generate(config)
        assert results[vae_dtype].info["vae_dtype"] == vae_dtype and results[vae_dtype].info["dtype"] == "float32"
    a, b = (frames_to_array(r.frames).astype(float) for r in results.values())
    assert a.shape == b.shape == (5, 64, 64, 3)
    assert np.abs(a - b).mean() < 3.0  # out of 255: rounding, not another video

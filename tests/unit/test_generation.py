"""End-to-end tiny generation on CPU with the embedded model."""

import dataclasses

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from wanray.attention import BackendUnavailable
from wanray.config import GenerationConfig, LoraRef
from wanray.video import frames_to_array

SMALL = dict(height=64, width=64, frames=9, steps=2)


def _gen(generator, photo, **kw):
    return generator.generate(GenerationConfig(image=photo, prompt="a girl dances the wave", **{**SMALL, **kw}))


def test_generates_frames_of_the_requested_size_and_a_decodable_mp4(embedded_generator, photo, tmp_path):
    calls = []
    result = embedded_generator.generate(
        GenerationConfig(image=photo, prompt="a boy dances the robot", fps=12, **SMALL),
        progress=lambda i, n: calls.append((i, n)),
    )
    assert len(result.frames) == 9 and result.frames[0].size == (64, 64)
    assert calls == [(1, 2), (2, 2)]
    path = result.save(tmp_path / "out.mp4")
    video = iio.imread(path)
    assert video.shape == (9, 64, 64, 3)
    assert iio.immeta(path)["fps"] == 12
    assert result.info["attention"] == "sdpa" and result.info["steps"] == 2
    assert result.info["tiled_vae"] is None  # one process: the whole frame, no tiles


def test_explicit_vae_tiles_are_used_and_blend_close_to_the_whole_frame(embedded_generator, photo):
    whole = frames_to_array(_gen(embedded_generator, photo, seed=3).frames).astype(float)
    tiled = _gen(embedded_generator, photo, seed=3, tile_size=(6, 6), tile_stride=(4, 4))
    assert tiled.info["tiled_vae"] == {"tile_size": [6, 6], "tile_stride": [4, 4]}
    # same latents; only the VAE's view at tile seams differs
    assert np.abs(frames_to_array(tiled.frames) - whole).mean() < 20


def test_tile_size_without_stride_is_refused(photo):
    with pytest.raises(ValueError, match="tile_size and tile_stride together"):
        GenerationConfig(image=photo, prompt="x", tile_size=(8, 8))
    with pytest.raises(ValueError, match="at most tile_size"):
        GenerationConfig(image=photo, prompt="x", tile_size=(8, 8), tile_stride=(9, 4))


def test_same_seed_same_frames_other_seed_other_frames(embedded_generator, photo):
    a = frames_to_array(_gen(embedded_generator, photo, seed=5).frames)
    b = frames_to_array(_gen(embedded_generator, photo, seed=5).frames)
    c = frames_to_array(_gen(embedded_generator, photo, seed=6).frames)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_vace_video_conditions_the_output(embedded_generator, photo):
    rng = np.random.default_rng()
    pose = [Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")) for _ in range(9)]
    base = frames_to_array(_gen(embedded_generator, photo).frames)
    vace = frames_to_array(_gen(embedded_generator, photo, vace_video=pose).frames)
    assert vace.shape == base.shape and not np.array_equal(base, vace)


def test_the_all_zero_vace_clip_is_encoded_once_per_shape_with_the_same_latents(embedded_generator, photo,
                                                                                monkeypatch):
    from diffsynth.models.wan_video_vae import WanVideoVAE

    vae = embedded_generator.pipe.vae
    zeros = torch.zeros(1, 3, 9, 64, 64)
    expected = WanVideoVAE.encode(vae, zeros, device="cpu")  # DiffSynth's own, no memo
    assert torch.equal(vae.encode(zeros, device="cpu"), expected)
    encodes = []
    encode = type(vae.model).encode
    monkeypatch.setattr(type(vae.model), "encode", lambda self, x, scale: encodes.append(x) or encode(self, x, scale))
    again = vae.encode(zeros, device="cpu")
    assert torch.equal(again, expected) and not encodes  # from the memo, a copy a caller may change
    again += 1
    assert torch.equal(vae.encode(zeros, device="cpu"), expected)
    clip = torch.rand(1, 3, 9, 64, 64) * 2 - 1  # anything else is encoded, every time
    vae.encode(clip, device="cpu"), vae.encode(clip, device="cpu")
    assert len(encodes) == 2
    # a generation with a pose video (no mask): VACE's inactive clip is all zeros, so one encode fewer
    rng = np.random.default_rng()
    pose = [Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")) for _ in range(9)]
    encodes.clear()
    _gen(embedded_generator, photo, vace_video=pose)
    assert len(encodes) == 2  # the first frame's clip and VACE's reactive one


def test_tea_cache_without_coefficients_is_refused(embedded_generator, photo, monkeypatch):
    # the embedded model has coefficients (wanray.tea_cache); a model without any is refused before any work
    monkeypatch.setattr(embedded_generator, "spec", dataclasses.replace(embedded_generator.spec, tea_cache_model_id=None))
    with pytest.raises(BackendUnavailable, match="TeaCache needs coefficients.*python -m wanray.tea_cache calibrate"):
        _gen(embedded_generator, photo, tea_cache=0.2)


def _random_lora(dit, path, rank=4, scale=0.5):
    state = {}
    for i, block in enumerate(dit.blocks):
        for name in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "ffn.0", "ffn.2"):
            layer = block.get_submodule(name)
            out_f, in_f = layer.out_features, layer.in_features
            state[f"blocks.{i}.{name}.lora_A.weight"] = torch.randn(rank, in_f) * scale
            state[f"blocks.{i}.{name}.lora_B.weight"] = torch.randn(out_f, rank) * scale
    save_file(state, str(path))
    return path


def test_lora_changes_output_and_unloading_restores_base(embedded_generator, photo, tmp_path):
    lora = _random_lora(embedded_generator.pipe.dit, tmp_path / "style.safetensors")
    base = frames_to_array(_gen(embedded_generator, photo).frames)
    weights_before = embedded_generator.pipe.dit.blocks[0].self_attn.q.weight.clone()
    styled = frames_to_array(_gen(embedded_generator, photo, loras=(LoraRef(path=lora, alpha=1.0),)).frames)
    half = frames_to_array(_gen(embedded_generator, photo, loras=(LoraRef(path=lora, alpha=0.3),)).frames)
    assert not np.array_equal(base, styled) and not np.array_equal(styled, half)
    assert torch.equal(embedded_generator.pipe.dit.blocks[0].self_attn.q.weight, weights_before)
    again = frames_to_array(_gen(embedded_generator, photo).frames)
    assert np.array_equal(base, again)


def test_lora_that_does_not_fit_the_model_is_refused(embedded_generator, photo, tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"blocks.99.self_attn.q.lora_A.weight": torch.zeros(2, 192),
               "blocks.99.self_attn.q.lora_B.weight": torch.zeros(192, 2)}, str(path))
    with pytest.raises(ValueError, match="not in the model"):
        _gen(embedded_generator, photo, loras=(LoraRef(path=path),))
    embedded_generator.set_loras(())


def test_fp8_storage_stays_close_to_full_precision(photo):
    from wanray import ModelConfig
    from wanray.generation import WanGenerator

    base = WanGenerator.load(ModelConfig())
    fp8 = WanGenerator.load(ModelConfig(fp8_storage=True))
    assert fp8.fp8_storage and type(fp8.pipe.dit.blocks[0].ffn[0]).__name__ == "Fp8StorageLinear"
    a = frames_to_array(_gen(base, photo).frames).astype(float)
    b = frames_to_array(_gen(fp8, photo).frames).astype(float)
    assert np.abs(a - b).mean() < 4.0  # out of 255: FP8 rounding, not a different video
    assert _gen(fp8, photo).info["fp8_storage"] is True


def test_expert_lora_on_a_one_dit_model_is_refused(embedded_generator, photo, tmp_path):
    from wanray.inputs import InvalidInput

    lora = _random_lora(embedded_generator.pipe.dit, tmp_path / "high.safetensors")
    with pytest.raises(InvalidInput, match="needs a two-expert model"):
        _gen(embedded_generator, photo, loras=(LoraRef(path=lora, expert="high_noise"),))
    embedded_generator.set_loras(())


def test_expert_lora_goes_to_its_expert_only(tmp_path, tiny_moe_spec):
    from diffsynth.core import LoRAHotLoadMixin

    from wanray import ModelConfig
    from wanray.generation import WanGenerator
    from wanray.model_writer import write_random_model_dir

    root = write_random_model_dir(tmp_path / "moe", tiny_moe_spec, seed=3)
    gen = WanGenerator.load(ModelConfig(model=str(root)))
    lora = _random_lora(gen.pipe.dit, tmp_path / "low.safetensors", rank=2)

    def patched(dit):
        return sum(len(m.lora_A_weights) for m in dit.modules() if isinstance(m, LoRAHotLoadMixin))

    gen.set_loras((LoraRef(path=lora, expert="low_noise"),))
    assert patched(gen.pipe.dit2) == 2 * 6 and patched(gen.pipe.dit) == 0
    gen.set_loras((LoraRef(path=lora),))
    assert patched(gen.pipe.dit2) == 12 and patched(gen.pipe.dit) == 12


def test_lightx2v_style_lora_with_bias_and_weight_deltas_applies_and_unloads(embedded_generator, photo, tmp_path):
    dit = embedded_generator.pipe.dit
    q, head = dit.blocks[0].self_attn.q, dit.head.head
    state = {f"diffusion_model.{k}": v for k, v in load_file(str(_random_lora(dit, tmp_path / "a.safetensors"))).items()}
    bias_delta, head_delta = torch.randn_like(q.bias), torch.randn_like(head.weight) * 0.01
    state["diffusion_model.blocks.0.self_attn.q.diff_b"] = bias_delta
    state["diffusion_model.head.head.diff"] = head_delta
    state["diffusion_model.blocks.0.self_attn.q.alpha"] = torch.tensor(4.0)
    path = tmp_path / "distill.safetensors"
    save_file(state, str(path))
    bias, weight = q.bias.detach().clone(), head.weight.detach().clone()
    base = frames_to_array(_gen(embedded_generator, photo).frames)

    embedded_generator.set_loras((LoraRef(path=path, alpha=0.5),))
    assert torch.allclose(q.bias, bias + 0.5 * bias_delta) and torch.allclose(head.weight, weight + 0.5 * head_delta)
    styled = frames_to_array(_gen(embedded_generator, photo, loras=(LoraRef(path=path, alpha=0.5),)).frames)
    assert not np.array_equal(base, styled)
    embedded_generator.set_loras(())
    assert torch.equal(q.bias, bias) and torch.equal(head.weight, weight)
    assert np.array_equal(base, frames_to_array(_gen(embedded_generator, photo).frames))


def test_lora_with_unknown_or_misfit_keys_is_refused_whole(embedded_generator, photo, tmp_path):
    dit = embedded_generator.pipe.dit
    state = load_file(str(_random_lora(dit, tmp_path / "a.safetensors")))
    bias = dit.blocks[0].self_attn.q.bias.detach().clone()
    for extra, message in (({"blocks.0.self_attn.q.magnitude": torch.ones(3)}, "neither LoRA pairs nor"),
                           ({"blocks.0.self_attn.q.diff_b": torch.ones(7)}, r"has shape \(7,\)"),
                           ({"blocks.0.nonexistent.diff_b": torch.ones(7)}, "has no parameter")):
        path = tmp_path / "bad.safetensors"
        save_file({**state, **extra}, str(path))
        with pytest.raises(ValueError, match=message):
            embedded_generator.set_loras((LoraRef(path=path),))
        assert embedded_generator.loras == () and torch.equal(dit.blocks[0].self_attn.q.bias, bias)
        assert all(not m.lora_A_weights for m in dit.modules() if hasattr(m, "lora_A_weights"))

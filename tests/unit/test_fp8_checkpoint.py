"""FP8 DiT checkpoints (the community Wan2.2-I2V-A14B FP8 releases' formats) load through the model loader."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from wanray.loading import ModelFileError, check_model_dir, load_model_dir
from wanray.model_writer import write_random_model_dir

E4M3_MAX = 448.0


def _quantize(weight, per_row):
    """Like the FP8 releases: float8_e4m3fn weights and float32 scales (per tensor or per output row)."""
    amax = weight.abs().amax(dim=1, keepdim=True) if per_row else weight.abs().amax()
    scale = (amax.float() / E4M3_MAX).clamp(min=1e-12)
    return (weight.float() / scale).to(torch.float8_e4m3fn), scale


def _to_fp8_file(folder, *, prefix, scale_name, per_row, extras=True):
    """Replace the folder's DiT shards by one FP8 file: block linear weights quantized, the rest as is."""
    shards = sorted(folder.glob("diffusion_pytorch_model-*.safetensors"))
    original = {k: v for p in shards for k, v in load_file(p).items()}
    out = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)} if extras else {}
    for key, value in original.items():
        if key.startswith("blocks.") and key.endswith(".weight") and value.dim() == 2:
            q, scale = _quantize(value, per_row)
            out[prefix + key] = q
            out[prefix + key.removesuffix(".weight") + scale_name] = scale
            if extras:
                out[prefix + key.removesuffix(".weight") + ".scale_input"] = torch.tensor(1.0)
        else:
            out[prefix + key] = value
    for p in shards:
        p.unlink()
    (folder / "diffusion_pytorch_model.safetensors.index.json").unlink(missing_ok=True)
    save_file(out, str(folder / "diffusion_pytorch_model.safetensors"))
    return original


@pytest.fixture
def fp8_moe_dir(tmp_path, tiny_moe_spec):
    root = write_random_model_dir(tmp_path / "moe", tiny_moe_spec, seed=int(torch.randint(0, 1000, ())), shards=2)
    high = _to_fp8_file(root / "high_noise_model", prefix="model.diffusion_model.", scale_name=".scale_weight",
                        per_row=False)
    low = _to_fp8_file(root / "low_noise_model", prefix="", scale_name=".weight_scale", per_row=True, extras=False)
    return root, (high, low)


def test_both_experts_load_dequantized_within_fp8_rounding(fp8_moe_dir, tiny_moe_spec):
    root, originals = fp8_moe_dir
    assert load_file(root / "high_noise_model" / "diffusion_pytorch_model.safetensors")[
        "model.diffusion_model.blocks.0.self_attn.q.weight"].dtype == torch.float8_e4m3fn
    comps = load_model_dir(root, tiny_moe_spec)
    for dit, original in zip(comps.dits, originals):
        state = dit.state_dict()
        quantized = [k for k in original if k.startswith("blocks.") and original[k].dim() == 2]
        assert quantized
        for key, value in original.items():
            loaded, value = state[key].float(), value.float()
            if key in quantized:  # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 of the row's scale
                assert (loaded - value).abs().max() <= value.abs().max() / 16 + 1e-6, key
                assert not torch.equal(loaded, value) or value.abs().max() == 0
            else:
                assert torch.equal(loaded, value), key


def test_an_fp8_model_generates(fp8_moe_dir, tmp_path):
    from wanray import GenerationConfig, ModelConfig
    from wanray.generation import WanGenerator

    root, _ = fp8_moe_dir
    photo = tmp_path / "p.png"
    Image.fromarray((np.random.default_rng().random((64, 64, 3)) * 255).astype("uint8")).save(photo)
    result = WanGenerator.load(ModelConfig(model=str(root))).generate(
        GenerationConfig(image=photo, prompt="a dancer", height=32, width=32, frames=5, steps=1))
    assert len(result.frames) == 5 and result.frames[0].size == (32, 32)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("blocks.0.self_attn.q.weight"), "FP8 scale blocks.0.self_attn.q.weight_scale has no weight"),
    (lambda s: s.update({"blocks.0.self_attn.q.weight_scale": torch.ones(3)}), r"has shape \[3\]; expected a scalar"),
])
def test_bad_scales_are_named(fp8_moe_dir, tiny_moe_spec, change, message):
    root, _ = fp8_moe_dir
    path = root / "low_noise_model" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    change(state)
    save_file(state, str(path))
    with pytest.raises(ModelFileError, match=message):
        check_model_dir(root, tiny_moe_spec)


def test_a_scale_on_a_weight_that_is_not_float8_is_refused(fp8_moe_dir, tiny_moe_spec):
    root, _ = fp8_moe_dir
    path = root / "low_noise_model" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    state["blocks.0.self_attn.q.weight"] = state["blocks.0.self_attn.q.weight"].float()
    save_file(state, str(path))
    with pytest.raises(ValueError, match="blocks.0.self_attn.q.weight has an FP8 scale but is stored as torch.float32"):
        load_model_dir(root, tiny_moe_spec)

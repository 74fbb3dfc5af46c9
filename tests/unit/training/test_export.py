"""LoRA export: one file that DiffSynth, diffusers and ComfyUI read, and that changes what we generate."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wanray.components import build_dit
from wanray.config import GenerationConfig, LoraRef
from wanray.specs import embedded
from wanray.training.config import LoraSettings
from wanray.training.export import lora_export_state, write_lora
from wanray.training.model import DiTModule, add_lora
from wanray.video import frames_to_array

SEED_TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")


def _trained_lora(targets=SEED_TARGETS, rank=4, alpha=None):
    """A peft LoRA on a fresh embedded-size DiT, with random (as if trained) lora_B."""
    settings = LoraSettings(rank=rank, alpha=alpha, target_modules=targets)
    dit = build_dit(embedded().dit)
    add_lora(dit, settings, seed=int(torch.randint(0, 10_000, ()).item()))
    module = DiTModule(dit, None, checkpointing=False, offload=False)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.3)
    named = {n: p for n, p in module.named_parameters() if ".lora_" in n}
    return dit, named, settings


def test_keys_are_original_wan_names_with_the_alpha_scale_in_lora_b(tmp_path):
    dit, named, settings = _trained_lora(rank=4, alpha=8.0)  # scale 2
    state = lora_export_state(named, settings.scale, torch.float32)
    blocks = embedded().dit.num_layers
    assert len(state) == blocks * 2 * (8 + 2)  # q,k,v,o in self and cross attention + ffn.0, ffn.2; A and B
    key = "diffusion_model.blocks.3.self_attn.q.lora_B.weight"
    peft_b = named["dit.blocks.3.self_attn.q.lora_B.default.weight"]
    assert torch.allclose(state[key], peft_b * 2.0)
    assert state["diffusion_model.blocks.3.ffn.2.lora_A.weight"].shape == (4, 512)
    assert not any(k.endswith(".alpha") for k in state)
    # every key names a linear of the original DiT
    linears = {n for n, m in build_dit(embedded().dit).named_modules() if isinstance(m, torch.nn.Linear)}
    for k in state:
        assert k.startswith("diffusion_model.") and k.rsplit(".lora_", 1)[0].removeprefix("diffusion_model.") in linears


def test_comfyui_key_map_loads_every_tensor():
    """ComfyUI (comfy/lora.py, model_lora_keys_unet + load_lora): for every model weight
    ``diffusion_model.X.weight`` the key map has ``diffusion_model.X``; a LoRA is ``X.lora_B.weight`` (up) and
    ``X.lora_A.weight`` (down) for such an X; keys it does not match are reported as not loaded."""
    dit, named, settings = _trained_lora()
    state = lora_export_state(named, settings.scale, torch.bfloat16)
    model_keys = {f"diffusion_model.{k}" for k in build_dit(embedded().dit).state_dict()}
    key_map = {k[: -len(".weight")]: k for k in model_keys if k.endswith(".weight")}
    loaded = set()
    for x, weight in key_map.items():
        up, down = f"{x}.lora_B.weight", f"{x}.lora_A.weight"
        if up in state:
            loaded |= {up, down}
            assert state[up].shape[0] == dict(build_dit(embedded().dit).named_parameters())[
                weight.removeprefix("diffusion_model.")].shape[0]
    assert loaded == set(state)


def test_diffusers_converts_and_loads_it_into_its_wan_transformer():
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    dit, named, settings = _trained_lora()
    state = lora_export_state(named, settings.scale, torch.float32)
    converted = _convert_non_diffusers_wan_lora_to_diffusers(dict(state))
    assert len(converted) == len(state) and all(k.startswith("transformer.blocks.") for k in converted)
    arch = embedded().dit
    transformer = diffusers.WanTransformer3DModel(
        num_attention_heads=arch.num_heads, attention_head_dim=arch.head_dim, in_channels=arch.in_dim,
        out_channels=arch.out_dim, text_dim=arch.text_dim, freq_dim=arch.freq_dim, ffn_dim=arch.ffn_dim,
        num_layers=arch.num_layers, image_dim=1280, added_kv_proj_dim=arch.dim,
    )
    transformer.load_lora_adapter(converted, prefix="transformer", adapter_name="wanray")
    loaded = {n for n, _ in transformer.named_parameters() if ".lora_" in n}
    assert len(loaded) == len(state)  # every tensor landed in a LoRA layer of the diffusers model
    q = transformer.blocks[2].attn1.to_q
    assert torch.allclose(q.lora_B["wanray"].weight, state["diffusion_model.blocks.2.self_attn.q.lora_B.weight"])


def test_exported_lora_loads_in_diffsynth_and_changes_generation(embedded_generator, photo, tmp_path):
    dit, named, settings = _trained_lora()
    path = write_lora(tmp_path / "lora.safetensors", lora_export_state(named, settings.scale, torch.float32),
                      {"wanray.rank": 4})
    assert load_file(str(path))  # plain safetensors
    small = dict(image=photo, prompt="a girl dances", height=64, width=64, frames=5, steps=2)
    base = frames_to_array(embedded_generator.generate(GenerationConfig(**small)).frames)
    styled = frames_to_array(embedded_generator.generate(GenerationConfig(**small, loras=(LoraRef(path=path),))).frames)
    embedded_generator.set_loras(())
    assert styled.shape == base.shape and np.abs(styled.astype(int) - base).mean() > 1.0


def test_full_fine_tune_export_is_a_model_dir_our_loader_reads(tiny_model_dir, tiny_spec, tmp_path):
    from wanray.loading import load_model_dir
    from wanray.model_writer import dit_state_dict
    from wanray.training.export import export_full_model

    base = load_model_dir(tiny_model_dir, tiny_spec)
    trained = {k: v + torch.randn_like(v) * 0.01 for k, v in dit_state_dict(base.dits[0], None).items()}
    out = export_full_model(tmp_path / "model", source_dir=tiny_model_dir, spec=tiny_spec, trained=trained,
                            expert=None, dtype=torch.float32, shards=2)
    assert sorted(p.name for p in out.glob("diffusion_pytorch_model-*")) == [
        "diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]
    loaded = load_model_dir(out, tiny_spec)
    for k, v in loaded.dits[0].state_dict().items():
        assert torch.equal(v, trained[k]), k
    assert torch.equal(next(iter(loaded.vae.state_dict().values())), next(iter(base.vae.state_dict().values())))

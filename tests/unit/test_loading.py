"""Model directories in the published layouts load through the same path a 14B model takes."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from wanray.loading import ModelFileError, check_model_dir, load_model_dir, load_vae, read_pth
from wanray.model_writer import write_random_model_dir
from wanray.specs import CLIP_FILE, T5_FILE, TOKENIZER_DIR, VAE_FILE


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_sharded_wan21_layout_loads(tiny_model_dir, tiny_spec):
    names = sorted(p.name for p in tiny_model_dir.iterdir())
    assert "diffusion_pytorch_model-00001-of-00003.safetensors" in names
    assert "diffusion_pytorch_model-00003-of-00003.safetensors" in names
    assert {T5_FILE, VAE_FILE, CLIP_FILE, "config.json", "google"} <= set(names)
    comps = load_model_dir(tiny_model_dir, tiny_spec)
    assert len(comps.dits) == 1 and comps.image_encoder is not None
    # weights really came from the files (original key names, no converter surprises)
    shard_keys = {}
    for shard in sorted(tiny_model_dir.glob("diffusion_pytorch_model-*.safetensors")):
        shard_keys.update(load_file(shard))
    assert torch.equal(comps.dits[0].blocks[1].self_attn.q.weight, shard_keys["blocks.1.self_attn.q.weight"].float())
    t5 = torch.load(tiny_model_dir / T5_FILE, weights_only=True)
    assert torch.equal(comps.text_encoder.blocks[0].attn.q.weight, t5["blocks.0.attn.q.weight"].float())
    assert all(f.device.type == "cpu" for f in comps.dits[0].freqs)


def test_wan22_expert_layout_loads_two_dits(tmp_path, tiny_moe_spec):
    root = write_random_model_dir(tmp_path / "moe", tiny_moe_spec, seed=2, shards=2)
    assert (root / "high_noise_model" / "diffusion_pytorch_model-00002-of-00002.safetensors").is_file()
    assert not (root / CLIP_FILE).exists()
    comps = load_model_dir(root, tiny_moe_spec)
    assert len(comps.dits) == 2 and comps.image_encoder is None
    a, b = (d.blocks[0].self_attn.q.weight for d in comps.dits)
    assert not torch.equal(a, b)  # two distinct experts


def test_missing_shard_is_named(tmp_path, tiny_model_dir, tiny_spec):
    root = _copy(tiny_model_dir, tmp_path / "m")
    (root / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"missing DiT shard\(s\) diffusion_pytorch_model-00002-of-00003"):
        check_model_dir(root, tiny_spec)


def test_unexpected_key_is_named(tmp_path, tiny_model_dir, tiny_spec):
    root = _copy(tiny_model_dir, tmp_path / "m")
    shard = root / "diffusion_pytorch_model-00001-of-00003.safetensors"
    state = load_file(shard)
    state["blocks.0.bogus.weight"] = torch.zeros(3)
    save_file(state, shard)
    with pytest.raises(ModelFileError, match=r"1 unexpected key\(s\), e.g. blocks.0.bogus.weight"):
        check_model_dir(root, tiny_spec)


def test_wrong_shape_names_key_and_shapes(tmp_path, tiny_model_dir, tiny_spec):
    root = _copy(tiny_model_dir, tmp_path / "m")
    t5 = torch.load(root / T5_FILE, weights_only=True)
    t5["norm.weight"] = torch.zeros(7)
    torch.save(t5, root / T5_FILE)
    with pytest.raises(ModelFileError, match=r"models_t5_umt5-xxl-enc-bf16.pth.*norm.weight: file has \[7\], expected \[32\]"):
        check_model_dir(root, tiny_spec)


def test_missing_key_in_vae(tmp_path, tiny_model_dir, tiny_spec):
    root = _copy(tiny_model_dir, tmp_path / "m")
    vae = torch.load(root / VAE_FILE, weights_only=True)
    vae.pop("conv1.weight")
    torch.save(vae, root / VAE_FILE)
    with pytest.raises(ModelFileError, match=r"Wan2.1_VAE.pth.*missing key\(s\), e.g. model.conv1.weight"):
        check_model_dir(root, tiny_spec)


def test_the_vae_loads_alone_from_a_folder_without_the_other_files(tmp_path, tiny_model_dir, tiny_spec):
    alone = tmp_path / "vae_only"
    alone.mkdir()
    shutil.copy(tiny_model_dir / VAE_FILE, alone / VAE_FILE)
    whole = load_model_dir(tiny_model_dir, tiny_spec).vae.state_dict()
    vae = load_vae(alone, tiny_spec).state_dict()
    assert vae.keys() == whole.keys() and all(torch.equal(vae[k], whole[k]) for k in whole)

    state = torch.load(alone / VAE_FILE, weights_only=True)
    state["conv1.weight"] = torch.randn(3, *state["conv1.weight"].shape[1:])
    torch.save(state, alone / VAE_FILE)
    with pytest.raises(ModelFileError, match=r"Wan2.1_VAE.pth.*wrong shape\(s\), e.g. model.conv1.weight"):
        load_vae(alone, tiny_spec)
    (alone / VAE_FILE).unlink()
    with pytest.raises(ModelFileError, match="missing Wan VAE"):
        load_vae(alone, tiny_spec)


@pytest.mark.parametrize("missing", [T5_FILE, VAE_FILE, CLIP_FILE, TOKENIZER_DIR])
def test_missing_component_file(tmp_path, tiny_model_dir, tiny_spec, missing):
    root = _copy(tiny_model_dir, tmp_path / "m")
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelFileError, match="missing"):
        check_model_dir(root, tiny_spec)


def test_corrupt_safetensors(tmp_path, tiny_model_dir, tiny_spec):
    root = _copy(tiny_model_dir, tmp_path / "m")
    (root / "diffusion_pytorch_model-00003-of-00003.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match="00003-of-00003.safetensors: not a readable safetensors"):
        check_model_dir(root, tiny_spec)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ModelFileError, match="weights-only"):
        read_pth(path)


def test_index_naming_absent_shard(tmp_path, tiny_model_dir, tiny_spec):
    root = _copy(tiny_model_dir, tmp_path / "m")
    index_path = root / "diffusion_pytorch_model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["extra"] = "diffusion_pytorch_model-00009-of-00009.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelFileError, match="names shard"):
        check_model_dir(root, tiny_spec)


@pytest.mark.parametrize("content", [{"model_state": {"a": 1}}, {"a": 1}, [torch.zeros(2)]])
def test_a_pth_that_is_not_a_state_dict_is_named(tmp_path, content):
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    with pytest.raises(ModelFileError, match="weights.pth: expected a dict of tensors"):
        read_pth(path)


def test_a_broken_spec_file_is_named(tmp_path, tiny_model_dir):
    from wanray.specs import SPEC_FILE, spec_for_dir

    root = _copy(tiny_model_dir, tmp_path / "m")
    for text in ('{"name": ', '{"name": "x", "not_a_field": 1}'):
        (root / SPEC_FILE).write_text(text)
        with pytest.raises(ValueError, match=f"{SPEC_FILE}: not a valid model spec"):
            spec_for_dir(root)


@pytest.mark.parametrize("damage, message", [
    ("drop tokenizer_config.json", "missing tokenizer_config.json"),
    ("cut tokenizer.json", "tokenizer.json: not valid JSON"),
    ("empty tokenizer.json", "tokenizer.json: not a Hugging Face tokenizers file"),
])
def test_a_broken_tokenizer_is_named_before_any_weight_loads(tmp_path, tiny_model_dir, tiny_spec, damage, message):
    root = _copy(tiny_model_dir, tmp_path / "m")
    folder = root / TOKENIZER_DIR
    if damage.startswith("drop"):
        (folder / "tokenizer_config.json").unlink()
    elif damage.startswith("cut"):
        text = (folder / "tokenizer.json").read_text()
        (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    else:
        (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelFileError, match=message):
        check_model_dir(root, tiny_spec)

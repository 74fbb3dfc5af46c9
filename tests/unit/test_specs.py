import dataclasses
import json

import pytest

from wanray import components as C
from wanray.specs import (
    NAMED_SPECS,
    DiTArch,
    ModelSpec,
    embedded,
    get_spec,
    spec_for_dir,
    wan21_i2v_14b_720p,
    wan22_i2v_a14b,
)


def _hash(state_dict):
    from diffsynth.core.loader.file import hash_state_dict_keys

    return hash_state_dict_keys(state_dict)


def test_14b_specs_build_exactly_the_published_architectures():
    """DiffSynth identifies published files by an md5 of keys+shapes; our specs must reproduce those."""
    s21, s22 = wan21_i2v_14b_720p(), wan22_i2v_a14b()
    assert _hash(C.build_dit(s21.dit, empty=True).state_dict()) == "6bfcfb3b342cb286ce886889d519a77e"
    assert _hash(C.build_dit(s22.dit, empty=True).state_dict()) == "5b013604280dd715f8457c6ed6d6a626"
    assert _hash(C.build_text_encoder(s21.text_encoder, empty=True).state_dict()) == "9c8818c2cbea55eca56c7b447df170da"
    vae = {k.removeprefix("model."): v for k, v in C.build_vae(s21.vae, empty=True).state_dict().items()}
    assert _hash(vae) == "ccc42284ea13e1ad04693284c7a09be6"


@pytest.mark.parametrize("spec", [wan21_i2v_14b_720p(), wan22_i2v_a14b(), embedded()])
def test_param_count_formula_matches_the_module(spec):
    dit = C.build_dit(spec.dit, empty=True)
    assert spec.dit.num_params() == sum(p.numel() for p in dit.parameters())


def test_rope_constraint_is_explained():
    with pytest.raises(ValueError, match=r"head_dim = 256 / 4 = 64 gives 21"):
        DiTArch(dim=256, in_dim=36, ffn_dim=64, text_dim=32, num_heads=4, num_layers=1, has_image_input=True)


def test_text_dim_must_match():
    spec = embedded()
    with pytest.raises(ValueError, match="text encoder dim"):
        dataclasses.replace(spec, text_encoder=dataclasses.replace(spec.text_encoder, dim=64))


def test_json_round_trip(tmp_path):
    for name in NAMED_SPECS:
        spec = get_spec(name)
        spec.save(tmp_path)
        assert spec_for_dir(tmp_path) == spec
        assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_unknown_spec_name_lists_known():
    with pytest.raises(ValueError, match="wan2.1-i2v-14b-720p"):
        get_spec("wan3")


def test_published_layouts_are_recognised_from_config_json(tmp_path):
    s21, s22 = wan21_i2v_14b_720p(), wan22_i2v_a14b()
    d21 = tmp_path / "Wan2.1-I2V-14B-720P"
    d21.mkdir()
    (d21 / "config.json").write_text(json.dumps(s21.dit_config_json()))
    assert spec_for_dir(d21).name == "wan2.1-i2v-14b-720p"
    d22 = tmp_path / "Wan2.2-I2V-A14B"
    for expert in s22.expert_dirs:
        (d22 / expert).mkdir(parents=True)
        (d22 / expert / "config.json").write_text(json.dumps(s22.dit_config_json()))
    assert spec_for_dir(d22).name == "wan2.2-i2v-a14b"
    with pytest.raises(ValueError, match="--model-spec"):
        spec_for_dir(tmp_path)

"""The training inputs of a run: rows are counted from the manifest, not by decoding every video in the driver."""

import shutil

import pytest

from wanray.training.config import apply_overrides
from wanray.training.data import build_training_data
from wanray.training.presets import embedded_lora_smoke


def test_training_rows_are_counted_without_decoding(tiny_dance_set, tmp_path):
    broken = tmp_path / "set"
    shutil.copytree(tiny_dance_set, broken)
    for video in (broken / "videos").glob("*.mp4"):  # counting must not touch these; training would fail on them
        video.write_bytes(b"not a video")
    config = apply_overrides(embedded_lora_smoke(), [f"data.dataset={broken}", "data.limit=100"])
    data = build_training_data(config)
    assert data.rows == 7 and data.source == "pixels"  # the 8-entry set's train split (9:1)
    assert build_training_data(apply_overrides(config, ["data.limit=3"])).rows == 3
    with pytest.raises(Exception, match="could not be decoded"):
        data.datasets["train"].take(1)


def test_in_memory_rows_need_a_matching_latent_cache(tiny_dance_set, tmp_path):
    config = apply_overrides(embedded_lora_smoke(), [f"data.dataset={tiny_dance_set}", "data.in_memory=true",
                                                     f"data.latent_cache={tmp_path / 'no-cache'}"])
    with pytest.raises(ValueError, match="data.in_memory needs a latent cache that matches the run, but latent cache "
                                         ".*no-cache does not exist"):
        build_training_data(config)

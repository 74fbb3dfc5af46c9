"""A tiny synthetic dataset shared by the training integration tests (rendered once per module)."""

import pytest


@pytest.fixture(scope="module")
def tiny_dance_set(ray_cluster, tmp_path_factory):
    from wanray.datasets.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("dance") / "set"
    generate(SynthConfig(n=8, out=out, seed=0, height=64, width=64, frames=5))  # 7 train, 1 test entry
    return out

"""A synthetic set rendered through the CLI on the session's Ray cluster: 6 entries, 64x64, 9 frames."""

import shutil

import numpy as np
import pytest

SYNTH_ARGS = ["--n", "6", "--height", "64", "--width", "64", "--frames", "9", "--fps", "15"]


@pytest.fixture(scope="session")
def synth_args():
    return list(SYNTH_ARGS)


@pytest.fixture(scope="session")
def quiet_ray_data(ray_cluster):
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray_cluster


@pytest.fixture(scope="session")
def synth_seed():
    return int(np.random.default_rng().integers(10_000))


@pytest.fixture(scope="session")
def ray_set(quiet_ray_data, tmp_path_factory, synth_seed):
    from wanray.cli import main

    root = tmp_path_factory.mktemp("ray_set") / "set"
    assert main(["datasets", "synth", "--out", str(root), "--seed", str(synth_seed), *SYNTH_ARGS]) == 0
    return root


@pytest.fixture
def ray_set_copy(ray_set, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(ray_set, root)
    return root

"""Shared fixtures. Environment for Ray is set before anything imports it."""

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_spec():
    """A Wan2.1-I2V-shaped spec small enough to write and load in a second."""
    from wanray.specs import DiTArch, ImageEncoderArch, ModelSpec, TextEncoderArch, VAEArch

    return ModelSpec(
        name="tiny",
        dit=DiTArch(dim=48, in_dim=36, ffn_dim=64, text_dim=32, freq_dim=32, num_heads=2, num_layers=2,
                    has_image_input=True),
        text_encoder=TextEncoderArch(vocab=512, dim=32, dim_attn=32, dim_ffn=64, num_heads=2, num_layers=1,
                                     text_len=32),
        vae=VAEArch(dim=8),
        image_encoder=ImageEncoderArch(vision_layers=1, vision_heads=16, vision_mlp_ratio=0.25, embed_dim=16),
        default_height=64,
        default_width=64,
        default_steps=2,
    )


@pytest.fixture(scope="session")
def tiny_moe_spec(tiny_spec):
    """The Wan2.2-I2V-A14B layout (two experts, no CLIP) at tiny size."""
    return dataclasses.replace(
        tiny_spec,
        name="tiny-moe",
        dit=dataclasses.replace(tiny_spec.dit, has_image_input=False, require_clip_embedding=False),
        image_encoder=None,
        expert_dirs=("high_noise_model", "low_noise_model"),
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_spec):
    from wanray.model_writer import write_random_model_dir

    return write_random_model_dir(tmp_path_factory.mktemp("tiny_model"), tiny_spec, seed=1, shards=3)


@pytest.fixture(scope="session")
def embedded_generator():
    from wanray import ModelConfig
    from wanray.generation import WanGenerator

    return WanGenerator.load(ModelConfig(model="embedded"))


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server (the Debian package) on a free loopback port for the whole session."""
    from wanray.serving.redis_server import start_redis, stop_redis

    server = start_redis()
    try:
        yield server
    finally:
        stop_redis(server)


@pytest.fixture
def without_torchao(monkeypatch):
    """torchao looks uninstalled to wanray.accel, and the FP8 device check is off (so the install hint shows)."""
    from wanray import accel

    real = accel.importlib.util.find_spec
    monkeypatch.setattr(accel, "_EMULATE_FP8", True)
    monkeypatch.setattr(accel.importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))


@pytest.fixture
def photo(tmp_path):
    """A fresh random photo-like PNG on disk."""
    rng = np.random.default_rng()
    arr = (rng.random((96, 80, 3)) * 255).astype("uint8")
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (head node with dashboard) for the whole test session.

    Started like ``wanray cluster up`` does (``ray start --head`` in its own process session), so job
    submission, Serve and the State API work as on a real cluster, and stopping it touches no other
    Ray on the machine. Logical CPUs are declared above the 2 physical cores so Ray Data and Ray Train
    workers can run side by side (2 workers x 1 CPU on 2 CPUs hangs Ray Data). The driver in this
    process is connected; yields the LocalCluster.
    """
    import ray

    from wanray.raycluster.local import start_head, stop

    cluster = start_head(num_cpus=8, timeout_s=300)  # a loaded 2-core box can take minutes
    os.environ["RAY_ADDRESS"] = cluster.address
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        os.environ.pop("RAY_ADDRESS", None)
        leftovers = stop(cluster)
        assert not leftovers, f"Ray processes left behind: {leftovers}"

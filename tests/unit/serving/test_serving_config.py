"""ServeConfig validation, the parallel layout's arithmetic, the Serve config YAML, deployment options."""

from pathlib import Path

import pytest
import yaml

from wanray.config import ModelConfig
from wanray.serving.config import (ParallelConfig, ServeConfig, check_parallel, embedded_cpu, hash_token,
                                   wan21_i2v_720p_gpu)

SERVING = Path(__file__).parents[3] / "serving"


def test_parallel_degree_is_checked_against_heads_and_gpus():
    check_parallel(ParallelConfig(sequence_parallel=4), num_heads=40, gpus_per_replica=4)
    check_parallel(ParallelConfig(sequence_parallel=2, cfg_parallel=True), num_heads=40, gpus_per_replica=4)
    with pytest.raises(ValueError, match=r"num_heads\(40\) % sequence_parallel\(3\) = 1"):
        check_parallel(ParallelConfig(sequence_parallel=3), num_heads=40, gpus_per_replica=3)
    with pytest.raises(ValueError, match=r"sequence_parallel\(4\) \* cfg_parallel\(2\) = 8 != gpus_per_replica\(4\)"):
        check_parallel(ParallelConfig(sequence_parallel=4, cfg_parallel=True), num_heads=40, gpus_per_replica=4)
    with pytest.raises(ValueError, match="on CPU use 1"):
        check_parallel(ParallelConfig(sequence_parallel=2), num_heads=40, gpus_per_replica=0)
    with pytest.raises(ValueError, match=">= 1"):
        ParallelConfig(sequence_parallel=0)


def test_config_checks_the_layout_against_the_model_up_front():
    assert wan21_i2v_720p_gpu(sequence_parallel=8).gpus_per_replica == 8
    with pytest.raises(ValueError, match=r"num_heads\(40\) % sequence_parallel\(3\)"):
        wan21_i2v_720p_gpu(sequence_parallel=3)
    with pytest.raises(ValueError, match="on CPU use 1"):
        ServeConfig(parallel=ParallelConfig(sequence_parallel=2))


@pytest.mark.parametrize("changes, message", [
    (dict(min_replicas=3, max_replicas=2), "min_replicas <= max_replicas"),
    (dict(max_queued_jobs=0), "max_queued_jobs must be > 0"),
    (dict(queue_name="a b"), "queue_name"),
    (dict(redis_url="http://x"), "redis_url"),
    (dict(auth_token_sha256="secret"), "64 lowercase hex"),
    (dict(redelivery_timeout_s=0), "redelivery_timeout_s"),
])
def test_bad_settings_say_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(**changes)


def test_from_args_builds_nested_configs_and_refuses_unknown_keys():
    config = ServeConfig.from_args({"model": {"model": "embedded", "device": "cpu"},
                                    "parallel": {"sequence_parallel": 1},
                                    "max_replicas": 3})
    assert config.model == ModelConfig(model="embedded", device="cpu") and config.max_replicas == 3
    assert ServeConfig.from_args({"model": "embedded"}).model.model == "embedded"
    with pytest.raises(ValueError, match="unknown serving setting.*max_replica\\b"):
        ServeConfig.from_args({"max_replica": 3})
    assert ServeConfig.from_args(config.to_args()) == config


def test_hash_token():
    token = "a-long-enough-api-token"
    assert len(hash_token(token)) == 64 and hash_token(token) != hash_token(token + "x")
    with pytest.raises(ValueError, match="at least 16"):
        hash_token("short")


@pytest.mark.parametrize("name", ["serve_config.yaml", "serve_config_gpu.yaml"])
def test_the_yamls_are_valid_serve_configs_whose_args_are_serve_configs(name):
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(yaml.safe_load((SERVING / name).read_text()))
    app = schema.applications[0]
    assert app.import_path == "wanray.serving.app:build_app"
    assert "working_dir" not in (app.runtime_env or {})  # the installed package, never a local folder
    config = ServeConfig.from_args(app.args)
    if name == "serve_config.yaml":
        assert config.model.model == "embedded" and config.parallel.world_size == 1 and config.gpus_per_replica == 0
    else:
        assert config.model.model == "wan2.1-i2v-14b-720p" and config.gpus_per_replica == config.parallel.world_size == 2


def test_generator_options_cpu_autoscaling_on_queue_depth():
    from wanray.serving.app import generator_options

    options = generator_options(embedded_cpu(redis_url="redis://h:1/0", queue_name="q1", max_replicas=3))
    assert options["max_ongoing_requests"] == 1
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0}
    assert "placement_group_bundles" not in options
    scaling = options["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 3)
    assert scaling["policy"]["policy_function"] == "wanray.serving.autoscaling:QueueDepthPolicy"
    assert scaling["policy"]["policy_kwargs"]["active_key"] == "q1:active"
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**scaling)  # Serve accepts it


def test_generator_options_multi_gpu_replica_is_one_strict_pack_placement_group():
    from wanray.serving.app import generator_options

    options = generator_options(wan21_i2v_720p_gpu(sequence_parallel=2, cfg_parallel=True, min_replicas=2,
                                                   max_replicas=2))
    assert options["placement_group_strategy"] == "STRICT_PACK"
    bundles = options["placement_group_bundles"]
    assert len(bundles) == 4 and all(b["GPU"] == 1 for b in bundles)
    actor = options["ray_actor_options"]
    assert actor["num_gpus"] == 1 and actor["num_cpus"] <= bundles[0]["CPU"]  # the replica fits bundle 0
    assert options["num_replicas"] == 2 and "autoscaling_config" not in options


def test_build_app_binds_ingress_and_generator():
    from wanray.serving.app import build_app

    app = build_app({"redis_url": "redis://127.0.0.1:1/0", "model": {"model": "embedded"}})
    assert type(app).__name__ == "Application"


def test_serve_up_gives_replicas_absolute_paths_for_folders_named_relative_to_here(tmp_path, monkeypatch):
    import os

    from wanray.cli import build_parser
    from wanray.serving.cli import deploy_config

    embedded_dir = Path(__file__).parents[3] / "wanray" / "embedded_model"
    os.symlink(embedded_dir, tmp_path / "my-model")
    (tmp_path / "loras").mkdir()
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["serve", "up", "--model", "my-model", "--lora-dir", "loras", "--store", "videos"])
    app = next(a for a in deploy_config(args, "redis://127.0.0.1:1")["applications"] if a["name"] == "wanray")
    assert Path(app["args"]["model"]["model"]) == (tmp_path / "my-model").resolve()
    assert Path(app["args"]["lora_dir"]).is_absolute() and Path(app["args"]["store_uri"]).is_absolute()
    named = build_parser().parse_args(["serve", "up", "--model", "embedded"])  # a name, not a folder: as given
    app = next(a for a in deploy_config(named, "redis://127.0.0.1:1")["applications"] if a["name"] == "wanray")
    assert app["args"]["model"]["model"] == "embedded"

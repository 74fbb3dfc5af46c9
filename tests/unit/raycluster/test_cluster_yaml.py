"""cluster.yaml passes Ray's own autoscaler schema and validation; a broken copy fails naming the key."""

import copy
import importlib.metadata
import random
import re
import string
from pathlib import Path

import pytest
import ray
import yaml

from wanray.cli import main
from wanray.raycluster.manifests import image_problem, validate_cluster_config, validate_file

ROOT = Path(__file__).resolve().parents[3]
CLUSTER_YAML = ROOT / "cluster.yaml"


@pytest.fixture
def config():
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture
def rng():
    return random.Random()


def _typo(rng, word):
    i = rng.randrange(len(word))
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i:]


def _gpu_type(config):
    return next(name for name, t in config["available_node_types"].items() if t["resources"].get("GPU"))


def test_cluster_yaml_passes_rays_schema_and_validation():
    assert validate_file(CLUSTER_YAML) == []


def test_gpu_workers_scale_from_zero_on_8_h100_nodes_and_head_is_cpu(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = config["available_node_types"][_gpu_type(config)]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert gpu["resources"]["GPU"] == 8
    assert gpu["node_config"]["InstanceType"] in ("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge")


def test_image_is_pinned_to_the_installed_ray_and_matches_the_dockerfile(config):
    image = config["docker"]["image"]
    assert image_problem(image) is None
    assert f":{ray.__version__}-" in image
    dockerfile = (ROOT / "raycluster" / "Dockerfile").read_text()
    assert re.search(r"^FROM (\S+)$", dockerfile, re.M).group(1) == image


def test_setup_installs_this_wanray_version_from_the_mounted_wheel(config):
    wheel = f"wanray-{importlib.metadata.version('wanray')}-py3-none-any.whl"
    installs = [c for c in config["setup_commands"] if wheel in c]
    assert installs, f"no setup command installs {wheel}"
    folder = installs[0].split('"')[1].rsplit("/", 1)[0]
    assert config["file_mounts"][folder] == "./dist"


def test_models_are_mounted_and_auth_is_on(config):
    options = config["docker"]["run_options"]
    assert any(o.startswith("--volume=") and o.endswith(":/models:ro") for o in options)
    assert "--env=WANRAY_MODEL_DIR=/models" in options and "--env=RAY_AUTH_MODE=token" in options
    token_path = next(o.split("=", 2)[2] for o in options if o.startswith("--env=RAY_AUTH_TOKEN_PATH="))
    assert str(Path(token_path).parent) in config["file_mounts"]


def test_every_key_is_commented():
    """Each mapping key has a comment on its line or on the line(s) just above it."""
    lines = CLUSTER_YAML.read_text().splitlines()
    uncommented = []

    def walk(node):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                line = key.start_mark.line
                above = line - 1
                while above >= 0 and lines[above].strip() == "":
                    above -= 1
                commented = "#" in lines[line] or (above >= 0 and lines[above].strip().startswith("#"))
                if not commented:
                    uncommented.append(f"line {line + 1}: {key.value}")
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    walk(yaml.compose(CLUSTER_YAML.read_text()))
    assert not uncommented, uncommented


def test_misspelt_top_level_key_is_named(config, rng):
    key = rng.choice([k for k in config if k != "cluster_name"])
    wrong = _typo(rng, key)
    config[wrong] = config.pop(key)
    errors = validate_cluster_config(config)
    assert any(repr(wrong) in e for e in errors), errors


@pytest.mark.parametrize("key", ["min_workers", "max_workers", "resources", "node_config"])
def test_misspelt_node_type_key_is_named(config, rng, key):
    gpu_type = _gpu_type(config)
    gpu = config["available_node_types"][gpu_type]
    wrong = _typo(rng, key)
    gpu[wrong] = gpu.pop(key)
    errors = validate_cluster_config(config)
    assert any(repr(wrong) in e and e.startswith(f"available_node_types.{gpu_type}") for e in errors), errors


def test_wrong_type_is_named_by_its_path(config, rng):
    word = "".join(rng.choices(string.ascii_lowercase, k=6))
    config["max_workers"] = word
    gpu_type = _gpu_type(config)
    config["available_node_types"][gpu_type]["resources"]["GPU"] = 8.5
    errors = validate_cluster_config(config)
    assert f"max_workers: '{word}' is not of type 'integer'" in errors
    assert f"available_node_types.{gpu_type}.resources.GPU: 8.5 is not of type 'integer'" in errors


def test_missing_resources_is_named(config):
    gpu_type = _gpu_type(config)
    del config["available_node_types"][gpu_type]["resources"]
    assert validate_cluster_config(config) == [f"available_node_types.{gpu_type}: 'resources' is a required property"]


def test_unknown_head_node_type_is_named(config, rng):
    config["head_node_type"] = name = "head_" + "".join(rng.choices(string.ascii_lowercase, k=5))
    errors = validate_cluster_config(config)
    assert len(errors) == 1 and errors[0].startswith(f"head_node_type: {name!r} is not one of")


def test_rays_own_validation_runs_after_the_schema(config):
    config["available_node_types"][_gpu_type(config)]["min_workers"] = config["max_workers"] + 1
    errors = validate_cluster_config(config)
    assert len(errors) == 1 and "smaller than the sum of `min_workers`" in errors[0]


@pytest.mark.parametrize("image", ["rayproject/ray", "rayproject/ray:latest", "localhost:5000/ray", "ray:nightly"])
def test_unpinned_image_is_refused(config, image):
    config["docker"]["image"] = image
    errors = validate_cluster_config(config)
    assert len(errors) == 1 and errors[0].startswith("docker.image:") and "not pinned" in errors[0]


@pytest.mark.parametrize("image", ["rayproject/ray:2.60.0-py311-cu128", "localhost:5000/ray:1.2",
                                   "ray@sha256:" + "a" * 64])
def test_pinned_images_pass(image):
    assert image_problem(image) is None


def test_validate_command_names_the_offending_key(config, tmp_path, capsys):
    broken = copy.deepcopy(config)
    broken["idle_timeout_minutez"] = broken.pop("idle_timeout_minutes")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert main(["cluster", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: INVALID" in out and "'idle_timeout_minutez' was unexpected" in out

    assert main(["cluster", "validate", str(CLUSTER_YAML)]) == 0
    assert f"{CLUSTER_YAML}: ok" in capsys.readouterr().out

"""KubeRay manifests: structurally sound, pinned, GPU workers, real wanray entrypoints; broken copies fail clearly."""

import copy
import random
import string

import pytest
import ray
import yaml

from wanray.raycluster.manifests import (
    KUBERAY_DIR,
    bundled_manifests,
    image_problem,
    validate_file,
    validate_kubernetes,
)


def _docs(name):
    return [d for d in yaml.safe_load_all((KUBERAY_DIR / name).read_text()) if d]


def _ray_doc(name, kind):
    return next(d for d in _docs(name) if d["kind"] == kind)


def _cluster_spec(doc):
    return {"RayCluster": lambda s: s, "RayJob": lambda s: s["rayClusterSpec"],
            "RayService": lambda s: s["rayClusterConfig"]}[doc["kind"]](doc["spec"])


def _containers(group):
    return group["template"]["spec"]["containers"]


@pytest.fixture
def rng():
    return random.Random()


def test_bundled_manifests_are_valid():
    paths = bundled_manifests()
    assert {p.name for p in paths} >= {"raycluster.yaml", "rayjob-train.yaml", "rayservice.yaml", "storage.yaml"}
    for path in paths:
        assert validate_file(path) == [], path


@pytest.mark.parametrize("name,kind", [("raycluster.yaml", "RayCluster"), ("rayjob-train.yaml", "RayJob"),
                                       ("rayservice.yaml", "RayService")])
def test_each_cluster_has_token_auth_pinned_ray_and_8_gpu_workers(name, kind):
    doc = _ray_doc(name, kind)
    assert doc["apiVersion"] == "ray.io/v1"
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in _containers(g))]
    assert gpu_groups
    for group in gpu_groups:
        container = _containers(group)[0]
        resources = container["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "8"
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        for container in _containers(group):
            assert image_problem(container["image"]) is None
            assert f"ray{ray.__version__}" in container["image"]  # the wanray image built on this Ray


def test_long_lived_cluster_scales_gpu_workers_from_zero():
    spec = _ray_doc("raycluster.yaml", "RayCluster")["spec"]
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"].startswith("gpu"))
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and gpu["maxReplicas"] >= 1
    assert spec["enableInTreeAutoscaling"] is True


def test_rayjob_runs_a_training_preset_of_the_installed_package():
    from wanray.training.presets import PRESETS

    entrypoint = _ray_doc("rayjob-train.yaml", "RayJob")["spec"]["entrypoint"].split()
    assert entrypoint[:3] == ["python", "-m", "wanray.training.train"]
    assert entrypoint[entrypoint.index("--preset") + 1] in PRESETS


def test_rayservice_serves_the_wanray_app_with_settings_it_accepts():
    from wanray.serving.config import ServeConfig

    serve = yaml.safe_load(_ray_doc("rayservice.yaml", "RayService")["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    assert app["import_path"] == "wanray.serving.app:build_app"
    config = ServeConfig.from_args(app["args"])
    assert config.gpus_per_replica >= 1 and config.model.model == "wan2.1-i2v-14b-720p"
    assert config.redis_url.startswith("redis://wanray-redis:")  # the Service in the same file
    assert any(d["kind"] == "Service" and d["metadata"]["name"] == "wanray-redis" for d in _docs("rayservice.yaml"))


def _broken(name, kind, mutate):
    doc = copy.deepcopy(_ray_doc(name, kind))
    mutate(doc)
    return validate_kubernetes(doc)


def test_wrong_api_version_is_named():
    errors = _broken("raycluster.yaml", "RayCluster", lambda d: d.update(apiVersion="ray.io/v1alpha1"))
    assert errors == ["apiVersion: 'ray.io/v1alpha1', expected 'ray.io/v1'"]


def test_entrypoint_of_a_missing_module_is_named(rng):
    module = "wanray.training." + "".join(rng.choices(string.ascii_lowercase, k=8))
    errors = _broken("rayjob-train.yaml", "RayJob", lambda d: d["spec"].update(entrypoint=f"python -m {module} --x"))
    assert errors == [f"spec.entrypoint: module {module!r} is not a wanray module that exists"]


def test_entrypoint_that_is_not_a_module_is_refused():
    errors = _broken("rayjob-train.yaml", "RayJob", lambda d: d["spec"].update(entrypoint="python train.py"))
    assert len(errors) == 1 and "must run a wanray module" in errors[0]


def test_unknown_preset_and_bad_override_are_named(rng):
    preset = "".join(rng.choices(string.ascii_lowercase, k=10))
    errors = _broken("rayjob-train.yaml", "RayJob", lambda d: d["spec"].update(
        entrypoint=f"python -m wanray.training.train --preset {preset}"))
    assert len(errors) == 1 and f"unknown preset {preset!r}" in errors[0]
    errors = _broken("rayjob-train.yaml", "RayJob", lambda d: d["spec"].update(
        entrypoint="python -m wanray.training.train --preset embedded_lora_smoke --set optim.lrr=1"))
    assert len(errors) == 1 and "optim.lrr" in errors[0]


def test_unpinned_image_is_named(rng):
    def unpin(doc):
        doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"] = "rayproject/ray:latest"

    errors = _broken("raycluster.yaml", "RayCluster", unpin)
    assert errors == ["spec.workerGroupSpecs[0].template.spec.containers[0].image: image 'rayproject/ray:latest' is "
                      "not pinned: tag 'latest' moves; use a version tag or @sha256 digest"]


def test_gpu_requests_must_equal_limits():
    def halve(doc):
        _containers(doc["spec"]["workerGroupSpecs"][0])[0]["resources"]["requests"]["nvidia.com/gpu"] = "4"

    errors = _broken("raycluster.yaml", "RayCluster", halve)
    assert len(errors) == 1 and "requests and limits must be equal" in errors[0]


def test_replica_bounds_and_autoscaling_are_checked():
    errors = _broken("raycluster.yaml", "RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(replicas=9))
    assert len(errors) == 1 and "minReplicas <= replicas <= maxReplicas" in errors[0]
    errors = _broken("raycluster.yaml", "RayCluster", lambda d: d["spec"].pop("enableInTreeAutoscaling"))
    assert len(errors) == 1 and "never will" in errors[0]


def test_non_string_ray_start_params_and_unquoted_ray_version_are_named():
    def mutate(doc):
        doc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
        doc["spec"]["rayVersion"] = 2.6

    errors = _broken("raycluster.yaml", "RayCluster", mutate)
    assert any(e.startswith("spec.headGroupSpec.rayStartParams.num-cpus: KubeRay wants strings") for e in errors)
    assert any(e.startswith("spec.rayVersion: 2.6, expected") for e in errors)
    assert len(errors) == 2


def test_serve_config_must_parse_and_its_args_must_be_serving_settings(rng):
    errors = _broken("rayservice.yaml", "RayService", lambda d: d["spec"].update(serveConfigV2="applications: [\n"))
    assert len(errors) == 1 and errors[0].startswith("spec.serveConfigV2: not valid YAML")

    setting = "".join(rng.choices(string.ascii_lowercase, k=9))

    def bad_arg(doc):
        serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
        serve["applications"][0]["args"][setting] = 1
        doc["spec"]["serveConfigV2"] = yaml.safe_dump(serve)

    errors = _broken("rayservice.yaml", "RayService", bad_arg)
    assert len(errors) == 1 and errors[0].startswith("spec.serveConfigV2.applications[0].args: unknown serving setting")
    assert setting in errors[0]


def test_validate_file_names_the_document_of_a_multi_document_manifest(tmp_path):
    docs = _docs("rayservice.yaml")
    docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "redis"
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    assert validate_file(path) == ["document 1: spec.template.spec.containers[0].image: image 'redis' is not "
                                   "pinned: add a version tag or @sha256 digest"]

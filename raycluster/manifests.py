"""Offline checks of cluster definitions: cluster.yaml and the KubeRay manifests.

    wanray cluster validate [cluster.yaml raycluster/kuberay/*.yaml]

- A cluster-launcher YAML is checked by Ray's own code from the installed ray: its JSON schema
  (``ray/autoscaler/ray-schema.json``: misspelt keys, wrong types, missing ``resources``), then
  ``prepare_config`` (fills the provider's defaults, no cloud call) and ``validate_config``. Errors
  name the offending key by its path, e.g. ``available_node_types.gpu_h100x8: 'resources' is a
  required property``.
- KubeRay manifests (``ray.io/v1`` RayCluster, RayJob, RayService) are checked structurally: the
  CRDs are not in the ray package, so this checks what wanray relies on: kinds, names, pinned
  images, head and worker groups, GPU requests, entrypoints naming real wanray modules and presets,
  a parseable ``serveConfigV2`` whose application and arguments wanray accepts.
- Everywhere: container images carry a version tag or digest (never ``latest``).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

KUBERAY_DIR = Path(__file__).parent / "kuberay"
KUBERAY_API = "ray.io/v1"
KUBERAY_KINDS = ("RayCluster", "RayJob", "RayService")
GPU_RESOURCE = "nvidia.com/gpu"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def bundled_manifests() -> list[Path]:
    return sorted(KUBERAY_DIR.glob("*.yaml"))


def validate_file(path: Path) -> list[str]:
    """Every problem found in a cluster-launcher YAML or a (multi-document) Kubernetes manifest."""
    path = Path(path)
    if not path.is_file():
        return [f"{path} does not exist"]
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        return [f"not valid YAML: {e}"]
    if not docs:
        return ["the file is empty"]
    errors = []
    for i, doc in enumerate(docs):
        prefix = f"document {i + 1}: " if len(docs) > 1 else ""
        if isinstance(doc, dict) and ("apiVersion" in doc or "kind" in doc):
            found = validate_kubernetes(doc)
        else:
            found = validate_cluster_config(doc)
        errors.extend(prefix + e for e in found)
    return errors


# ---- Ray cluster launcher ----------------------------------------------------------------------------------


def ray_autoscaler_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def validate_cluster_config(config: Any) -> list[str]:
    """cluster.yaml against Ray's schema and Ray's own preparation and validation code."""
    import jsonschema

    if not isinstance(config, dict):
        return [f"a cluster config must be a mapping, got {type(config).__name__}"]
    validator = jsonschema.Draft7Validator(ray_autoscaler_schema())
    errors = [f"{_json_path(e.absolute_path)}: {e.message}"
              for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))]
    if errors:
        return errors
    node_types = config.get("available_node_types", {})
    head = config.get("head_node_type")
    if node_types and head not in node_types:
        return [f"head_node_type: {head!r} is not one of available_node_types {sorted(node_types)}"]
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)  # "setting max workers for head node type to 0"
    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except Exception as e:  # ray raises ValueError, RuntimeError, AssertionError, jsonschema errors
        message = getattr(e, "message", None) or str(e) or type(e).__name__
        return [f"{_json_path(getattr(e, 'absolute_path', []))}: {message}"]
    docker = config.get("docker", {})
    images = {f"docker.{k}": docker[k] for k in ("image", "head_image", "worker_image") if k in docker}
    for name, node in node_types.items():
        if "worker_image" in node.get("docker", {}):
            images[f"available_node_types.{name}.docker.worker_image"] = node["docker"]["worker_image"]
    errors.extend(f"{where}: {problem}" for where, image in images.items() if (problem := image_problem(image)))
    return errors


def _json_path(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None: it needs a version tag (not ``latest``) or a digest."""
    if not isinstance(image, str) or not image:
        return f"image must be a non-empty string, got {image!r}"
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag (a ':' before the last '/' is a registry port)
        return f"image {image!r} is not pinned: add a version tag or @sha256 digest"
    if tag == "latest" or not any(c.isdigit() for c in tag):
        return f"image {image!r} is not pinned: tag {tag!r} moves; use a version tag or @sha256 digest"
    return None


# ---- Kubernetes / KubeRay ----------------------------------------------------------------------------------


def validate_kubernetes(doc: dict) -> list[str]:
    kind = doc.get("kind")
    errors = []
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
        errors.append(f"metadata.name: {name!r} must be a DNS label (lowercase letters, digits, '-', at most 63)")
    errors.extend(_check_images(doc))
    if not isinstance(doc.get("apiVersion"), str) or not isinstance(kind, str):
        return errors + ["apiVersion and kind must be strings"]
    if doc["apiVersion"].startswith("ray.io/") or kind in KUBERAY_KINDS:
        errors.extend(validate_kuberay(doc))
    return errors


def validate_kuberay(doc: dict) -> list[str]:
    kind = doc.get("kind")
    if doc.get("apiVersion") != KUBERAY_API:
        return [f"apiVersion: {doc.get('apiVersion')!r}, expected {KUBERAY_API!r}"]
    if kind not in KUBERAY_KINDS:
        return [f"kind: {kind!r} is not one of {KUBERAY_KINDS}"]
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return ["spec: missing"]
    if kind == "RayCluster":
        return _check_cluster_spec(spec, "spec")
    if kind == "RayJob":
        errors = _check_entrypoint(spec.get("entrypoint"), "spec.entrypoint")
        if "runtimeEnvYAML" in spec:
            errors.extend(_check_yaml_mapping(spec["runtimeEnvYAML"], "spec.runtimeEnvYAML"))
        for key in ("shutdownAfterJobFinishes",):
            if key in spec and not isinstance(spec[key], bool):
                errors.append(f"spec.{key}: must be true or false, got {spec[key]!r}")
        for key in ("ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"):
            if key in spec and (not isinstance(spec[key], int) or spec[key] < 0):
                errors.append(f"spec.{key}: must be an integer >= 0, got {spec[key]!r}")
        if "rayClusterSpec" in spec:
            errors.extend(_check_cluster_spec(spec["rayClusterSpec"], "spec.rayClusterSpec"))
        elif "clusterSelector" not in spec:
            errors.append("spec: needs rayClusterSpec (a cluster for the job) or clusterSelector (an existing one)")
        return errors
    # RayService
    errors = _check_serve_config(spec.get("serveConfigV2"), "spec.serveConfigV2")
    if "rayClusterConfig" not in spec:
        errors.append("spec.rayClusterConfig: missing")
    else:
        errors.extend(_check_cluster_spec(spec["rayClusterConfig"], "spec.rayClusterConfig"))
    return errors


def _check_cluster_spec(spec: Any, where: str) -> list[str]:
    import ray

    if not isinstance(spec, dict):
        return [f"{where}: must be a mapping"]
    errors = []
    if spec.get("rayVersion") != ray.__version__:
        errors.append(f"{where}.rayVersion: {spec.get('rayVersion')!r}, expected the pinned Ray {ray.__version__!r} "
                      "(quote it: a YAML number loses trailing zeros)")
    auth = (spec.get("authOptions") or {}).get("mode")
    if auth is not None and auth not in ("token", "disabled"):
        errors.append(f"{where}.authOptions.mode: {auth!r} is not token or disabled")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        errors.append(f"{where}.headGroupSpec: missing")
    else:
        errors.extend(_check_group(head, f"{where}.headGroupSpec"))
    workers = spec.get("workerGroupSpecs", [])
    if not isinstance(workers, list):
        return errors + [f"{where}.workerGroupSpecs: must be a list"]
    names = set()
    for i, group in enumerate(workers):
        at = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(group, dict):
            errors.append(f"{at}: must be a mapping")
            continue
        name = group.get("groupName")
        if not isinstance(name, str) or not _DNS_LABEL.match(name):
            errors.append(f"{at}.groupName: {name!r} must be a DNS label")
        elif name in names:
            errors.append(f"{at}.groupName: {name!r} is used twice")
        names.add(name)
        counts = {k: group.get(k) for k in ("minReplicas", "replicas", "maxReplicas")}
        bad = [k for k, v in counts.items() if not isinstance(v, int) or v < 0]
        if bad:
            errors.append(f"{at}: {', '.join(bad)} must be integers >= 0, got {counts}")
        elif not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
            errors.append(f"{at}: need minReplicas <= replicas <= maxReplicas, got {counts}")
        elif counts["minReplicas"] < counts["maxReplicas"] and spec.get("enableInTreeAutoscaling") is not True:
            errors.append(f"{at}: scales between {counts['minReplicas']} and {counts['maxReplicas']} replicas but "
                          f"{where}.enableInTreeAutoscaling is not true, so it never will")
        errors.extend(_check_group(group, at))
    return errors


def _check_group(group: dict, where: str) -> list[str]:
    errors = []
    params = group.get("rayStartParams")
    if not isinstance(params, dict):
        errors.append(f"{where}.rayStartParams: missing (use {{}} for none)")
    else:
        errors.extend(f"{where}.rayStartParams.{k}: KubeRay wants strings, got {v!r}"
                      for k, v in params.items() if not isinstance(v, str))
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        return errors + [f"{where}.template.spec.containers: missing"]
    for i, container in enumerate(containers):
        at = f"{where}.template.spec.containers[{i}]"
        if not isinstance(container, dict) or not container.get("name"):
            errors.append(f"{at}.name: missing")
            continue
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for kind, values in (("limits", limits), ("requests", requests)):
            if GPU_RESOURCE in values and (not str(values[GPU_RESOURCE]).isdigit() or int(values[GPU_RESOURCE]) < 1):
                errors.append(f"{at}.resources.{kind}.{GPU_RESOURCE}: must be a whole number >= 1, "
                              f"got {values[GPU_RESOURCE]!r}")
        if GPU_RESOURCE in requests and str(requests[GPU_RESOURCE]) != str(limits.get(GPU_RESOURCE)):
            errors.append(f"{at}.resources: {GPU_RESOURCE} requests and limits must be equal "
                          f"(Kubernetes does not overcommit GPUs)")
    return errors


def _check_images(node: Any, where: str = "") -> list[str]:
    """Every ``image:`` of every container (and init container) anywhere in the document."""
    errors = []
    if isinstance(node, dict):
        for key, value in node.items():
            at = f"{where}.{key}" if where else str(key)
            if key in ("containers", "initContainers") and isinstance(value, list):
                for i, container in enumerate(value):
                    image = container.get("image") if isinstance(container, dict) else None
                    if (problem := image_problem(image)) is not None:
                        errors.append(f"{at}[{i}].image: {problem}")
            errors.extend(_check_images(value, at))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            errors.extend(_check_images(value, f"{where}[{i}]"))
    return errors


def _check_yaml_mapping(text: Any, where: str) -> list[str]:
    if not isinstance(text, str):
        return [f"{where}: must be a YAML string (use `|`)"]
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"{where}: not valid YAML: {e}"]
    return [] if isinstance(value, dict) else [f"{where}: must hold a mapping"]


def _check_entrypoint(entrypoint: Any, where: str) -> list[str]:
    """``python -m wanray.<module> ...`` with a module that exists (and, for training, a known preset)."""
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        return [f"{where}: missing"]
    argv = shlex.split(entrypoint)
    if len(argv) < 3 or argv[0] not in ("python", "python3") or argv[1] != "-m":
        return [f"{where}: {entrypoint!r} must run a wanray module: python -m wanray.<module> ARGS"]
    module = argv[2]
    if not module_exists(module) or not module.startswith("wanray."):
        return [f"{where}: module {module!r} is not a wanray module that exists"]
    if module == "wanray.training.train":
        return _check_preset(argv[3:], where)
    return []


def _check_preset(args: list[str], where: str) -> list[str]:
    """The run's config must build: a known ``--preset`` and ``--set KEY=VALUE`` overrides it accepts."""
    from wanray.training.config import apply_overrides
    from wanray.training.presets import PRESETS, get_preset

    presets = _option_values(args, "--preset")
    if len(presets) != 1:
        return [f"{where}: a training job needs one --preset NAME (one of {', '.join(PRESETS)})"]
    try:
        apply_overrides(get_preset(presets[0]), _option_values(args, "--set"))
    except (TypeError, ValueError) as e:
        return [f"{where}: {e}"]
    return []


def _option_values(args: list[str], option: str) -> list[str]:
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == option]
    return values + [a.split("=", 1)[1] for a in args if a.startswith(option + "=")]


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def _check_serve_config(text: Any, where: str) -> list[str]:
    """``serveConfigV2``: a YAML string with applications whose import paths and arguments wanray accepts."""
    errors = _check_yaml_mapping(text, where)
    if errors:
        return errors
    config = yaml.safe_load(text)
    apps = config.get("applications")
    if not isinstance(apps, list) or not apps:
        return [f"{where}.applications: must be a non-empty list"]
    for i, app in enumerate(apps):
        at = f"{where}.applications[{i}]"
        if not isinstance(app, dict):
            errors.append(f"{at}: must be a mapping")
            continue
        for key in ("name", "route_prefix", "import_path"):
            if not isinstance(app.get(key), str):
                errors.append(f"{at}.{key}: missing")
        module, _, attr = str(app.get("import_path", "")).partition(":")
        if not attr or not module.startswith("wanray.") or not module_exists(module):
            errors.append(f"{at}.import_path: {app.get('import_path')!r} must be wanray.<module>:<builder> of a "
                          "module that exists")
        elif app["import_path"] == "wanray.serving.app:build_app":
            from wanray.serving.config import ServeConfig

            try:
                ServeConfig.from_args(app.get("args"))
            except (TypeError, ValueError) as e:
                errors.append(f"{at}.args: {e}")
    return errors

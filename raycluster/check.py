"""Check what a wanray job sees on a cluster: which wanray it imports, the versions, the GPUs, the model folder.

    wanray job submit check [--address http://HEAD:8265]     # on the cluster, as a Ray job
    python -m wanray.raycluster.check                          # here

Prints one JSON object and exits 1 when a wanray subpackage cannot be found (a half-shipped package).
Run it first on a new cluster: it takes seconds, where a broken environment would only show after a
GPU job has waited for its nodes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
import sys
from pathlib import Path

SUBPACKAGES = ("wanray.datasets", "wanray.training", "wanray.serving", "wanray.raycluster")


def environment_report() -> dict:
    import wanray

    from wanray.raycluster.runtime_env import editable_project_root

    report: dict = {
        "host": socket.gethostname(),
        "python": sys.executable,
        "python_version": platform.python_version(),
        "wanray_file": wanray.__file__,
        "editable_checkout": str(root) if (root := editable_project_root()) else None,
        "subpackages": {name: _location(name) for name in SUBPACKAGES},
        "versions": {dist: _version(dist) for dist in ("ray", "torch", "diffsynth", "deepspeed")},
        "model_dir": os.environ.get("WANRAY_MODEL_DIR"),
    }
    if report["model_dir"]:
        report["model_dir_exists"] = Path(report["model_dir"]).is_dir()
    try:
        import torch

        report["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        report["cuda_devices"] = None
    return report


def _location(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return spec.origin if spec else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    report = environment_report()
    print(json.dumps(report, indent=2))
    missing = [name for name, where in report["subpackages"].items() if where is None]
    if missing:
        print(f"error: wanray is incomplete here, missing {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

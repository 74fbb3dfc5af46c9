"""The runtime environment of a wanray job: the installed wanray package, shipped to the cluster.

A job runs ``python -m wanray...`` on the cluster, so the cluster must import the *same* wanray the
submitter has. Ray ships it as a ``py_modules`` entry: the directory is zipped, uploaded once per
content hash, unpacked on every node and put first on the job's PYTHONPATH (driver, tasks, actors).
It is never the repository root as ``working_dir``: that would ship tests, outputs and model folders,
and would still miss the layout, because ``wanray.datasets`` lives in ``datasets/``,
``wanray.training`` in ``training/``... (package-dir mapping in pyproject.toml).

Which directory is shipped:

- a regular install (site-packages/wanray) already holds every subpackage: shipped as it is;
- an editable install has the subpackages scattered over the checkout: the project is built into a
  wheel (``pip wheel --no-deps``, from a copy of its sources, so stale ``build/`` folders never leak
  in), the wheel is unpacked, and its ``wanray/`` is shipped.
  Builds are cached by the hash of the sources (``$WANRAY_CACHE_DIR``, default ``~/.cache/wanray``).

Why not ``py_modules: [the .whl]``: Ray installs a wheel with ``pip install WHEEL --target DIR``,
without ``--no-deps``, and ``--target`` ignores what is installed, so every job would download
torch, DiffSynth and Ray again (or fail offline). ``pip: {packages: [WHEEL], pip_install_options:
[--no-deps]}`` works offline but only when the wheel's path exists on every node (Ray does not upload
it) and builds a virtualenv per job. The dependencies themselves come from the cluster's image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_BUILDS = 3  # cached builds kept (newest first); older ones are deleted


def cache_root() -> Path:
    return Path(os.environ.get("WANRAY_CACHE_DIR", Path.home() / ".cache" / "wanray")).expanduser() / "runtime_env"


def editable_project_root() -> Path | None:
    """The source checkout wanray is imported from (an editable install), or None for a built install.

    Told by the layout, not by package metadata (a stray ``wanray.egg-info`` in the working directory
    shadows the installed metadata): in a built install this module sits in ``wanray/raycluster/``.
    """
    import wanray

    package = Path(wanray.__file__).resolve().parent
    if Path(__file__).resolve().parent.parent == package:
        return None
    root = package.parent
    if not (root / "pyproject.toml").is_file():
        raise RuntimeError(f"wanray is imported from {package} but {root} has no pyproject.toml to build it from")
    return root


def wanray_package_dir(cache_dir: Path | None = None) -> Path:
    """A ``wanray/`` directory holding the complete package (every subpackage inside), ready to ship."""
    project = editable_project_root()
    if project is None:
        import wanray

        return Path(wanray.__file__).parent
    return build_package_dir(project, cache_dir or cache_root())


def job_runtime_env(*, env_vars: dict[str, str] | None = None, cache_dir: Path | None = None) -> dict:
    """``runtime_env`` for a wanray job: the package as ``py_modules``, unbuffered output, extra env vars."""
    return {
        "py_modules": [str(wanray_package_dir(cache_dir))],
        "excludes": ["__pycache__"],
        "env_vars": {"PYTHONUNBUFFERED": "1", **(env_vars or {})},
    }


def project_sources(project: Path) -> list[Path]:
    """The files a wheel of the project is built from: pyproject.toml, the readme, every mapped package folder."""
    config = read_pyproject(project)
    files = [project / "pyproject.toml"]
    readme = config.get("project", {}).get("readme")
    if isinstance(readme, str):
        files.append(project / readme)
    package_dirs = config.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    if not package_dirs:
        raise RuntimeError(
            f"{project / 'pyproject.toml'} has no [tool.setuptools] package-dir; cannot tell what to ship")
    for folder in sorted(set(package_dirs.values())):
        root = project / folder
        files.extend(p for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts)
    return files


def read_pyproject(project: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((project / "pyproject.toml").read_text())


def sources_hash(project: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(project)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def build_package_dir(project: Path, cache_dir: Path) -> Path:
    """Build (or reuse) a wheel of ``project``, unpacked; returns its package directory (``.../wanray``)."""
    package = read_pyproject(project)["project"]["name"].replace("-", "_")
    files = project_sources(project)
    target = cache_dir / sources_hash(project, files)
    if (target / package / "__init__.py").is_file():
        _touch(target)
        return target / package
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        for path in files:
            dest = src / path.relative_to(project)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        wheel = build_wheel(src, tmp / "dist", package)
        unpacked = tmp / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        shutil.copy2(wheel, unpacked / wheel.name)  # kept next to the package, e.g. for cluster set-up
        try:
            os.rename(unpacked, target)
        except OSError:
            if not (target / package).is_dir():  # not a concurrent build that finished first
                raise
    _prune(cache_dir, keep=target)
    log.info("built %s for the cluster: %s", package, target)
    return target / package


def build_wheel(project: Path, out_dir: Path, package: str = "wanray") -> Path:
    """``pip wheel --no-deps --no-build-isolation`` (offline: uses this environment's setuptools)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
           "--wheel-dir", str(out_dir), str(project.resolve())]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(out_dir.glob(f"{package}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(f"building the {package} wheel failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return wheels[0]


def cached_wheel(package_dir: Path) -> Path | None:
    """The wheel a built package directory was unpacked from (None for a regular install)."""
    wheels = sorted(package_dir.parent.glob(f"{package_dir.name}-*.whl"))
    return wheels[0] if wheels else None


def _touch(path: Path) -> None:
    os.utime(path)


def _prune(cache_dir: Path, keep: Path) -> None:
    builds = sorted((p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [b for b in builds if b != keep][KEEP_BUILDS - 1:]:
        shutil.rmtree(old, ignore_errors=True)

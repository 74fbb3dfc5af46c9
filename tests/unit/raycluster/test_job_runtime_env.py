"""What a job ships: the package built from the project's package-dir mapping, cached by content."""

import json
import secrets
import zipfile
from pathlib import Path

import pytest

from wanray.raycluster import runtime_env
from wanray.raycluster.runtime_env import build_package_dir, cached_wheel, editable_project_root, job_runtime_env

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path):
    """A project laid out like wanray: the top package in core/, a subpackage mapped from sub/, package data."""
    root = tmp_path / "proj"
    (root / "core" / "data").mkdir(parents=True)
    (root / "sub").mkdir()
    marker = secrets.token_hex(8)
    (root / "core" / "__init__.py").write_text(f"MARKER = {marker!r}\n")
    (root / "core" / "data" / "weights.bin").write_bytes(secrets.token_bytes(64))
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "tool.py").write_text("def f():\n    return 1\n")
    (root / "README.md").write_text("fake\n")
    (root / "stray.py").write_text("not shipped\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "fakepkg"\nversion = "1.2.3"\nreadme = "README.md"\n'
        '[tool.setuptools]\npackage-dir = {"fakepkg" = "core", "fakepkg.sub" = "sub"}\n'
        'packages = ["fakepkg", "fakepkg.sub"]\n'
        '[tool.setuptools.package-data]\nfakepkg = ["data/*"]\n'
    )
    return root, marker


def test_package_is_built_with_its_mapped_subpackages_and_data(project, tmp_path):
    root, marker = project
    package = build_package_dir(root, tmp_path / "cache")
    assert package.name == "fakepkg"
    assert f"MARKER = {marker!r}" in (package / "__init__.py").read_text()
    assert (package / "sub" / "tool.py").is_file()
    assert (package / "data" / "weights.bin").read_bytes() == (root / "core" / "data" / "weights.bin").read_bytes()
    assert not (package.parent / "stray.py").exists()
    wheel = cached_wheel(package)
    assert wheel.name == "fakepkg-1.2.3-py3-none-any.whl"
    assert "fakepkg/sub/tool.py" in zipfile.ZipFile(wheel).namelist()
    assert not (root / "build").exists()  # built from a copy: the checkout stays clean


def _quick_wheel(src, out_dir, package):
    """Stands in for pip (seconds per build): the mapped folders zipped in the installed layout."""
    out_dir.mkdir(parents=True)
    wheel = out_dir / f"{package}-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for folder, prefix in (("core", package), ("sub", f"{package}/sub")):
            for path in (src / folder).rglob("*"):
                if path.is_file():
                    zf.write(path, f"{prefix}/{path.relative_to(src / folder)}")
    return wheel


def test_builds_are_reused_until_a_source_changes_and_old_ones_pruned(project, tmp_path, monkeypatch):
    root, _ = project
    builds = []
    monkeypatch.setattr(runtime_env, "build_wheel", lambda *a: builds.append(a) or _quick_wheel(*a))
    cache = tmp_path / "cache"
    first = build_package_dir(root, cache)
    assert build_package_dir(root, cache) == first and len(builds) == 1
    paths = [first]
    for i in range(3):
        (root / "sub" / "tool.py").write_text(f"def f():\n    return {i + 2}\n")
        paths.append(build_package_dir(root, cache))
        assert f"return {i + 2}" in (paths[-1] / "sub" / "tool.py").read_text()
    assert len(builds) == 4 and len(set(paths)) == 4
    kept = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert len(kept) == runtime_env.KEEP_BUILDS and paths[-1].parent.name in kept


def test_a_broken_project_fails_with_pips_error(project, tmp_path):
    root, _ = project
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text().replace('version = "1.2.3"',
                                                                                       'version = "not a version"'))
    with pytest.raises(RuntimeError, match="building the fakepkg wheel failed"):
        build_package_dir(root, tmp_path / "cache")


def test_this_checkout_is_an_editable_install_shipped_as_a_built_package():
    assert editable_project_root() == REPO


def test_runtime_env_ships_a_package_directory_never_the_repository(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime_env, "wanray_package_dir", lambda cache_dir=None: tmp_path / "x" / "wanray")
    env = job_runtime_env(env_vars={"A": "1"})
    assert env["py_modules"] == [str(tmp_path / "x" / "wanray")]
    assert "working_dir" not in env
    assert env["env_vars"] == {"PYTHONUNBUFFERED": "1", "A": "1"}
    json.dumps(env)  # Ray sends it as JSON

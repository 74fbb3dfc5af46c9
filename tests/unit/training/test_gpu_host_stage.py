"""scripts/gpu-host-train-embedded.sh stage: what each install call's checkout carries to the GPU host."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = "scripts/gpu-host-train-embedded.sh"
MODEL = Path("wanray/embedded_model")
VAE = MODEL / "Wan2.1_VAE.pth"
DIT = MODEL / "diffusion_pytorch_model-00001-of-00001.safetensors"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A throwaway clone holding this checkout's script (the stage step rewrites the clone's model folder)."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--shared", str(REPO), str(clone))
    shutil.copy(REPO / SCRIPT, clone / SCRIPT)
    return clone


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle folder shaped like offline-bundle.sh's, with small random parts."""
    out = tmp_path / "bundle"
    out.mkdir()
    rng = np.random.default_rng()
    for name in ("part-01.tar.xz", "part-02.tar.xz", "part-03.tar.xz"):
        (out / name).write_bytes(rng.bytes(int(rng.integers(1000, 5000))))
    for name in ("MANIFEST.txt", "SHA256SUMS", "offline-install.sh"):
        (out / name).write_text(name)
    return out


def stage(clone: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, "stage", *args], cwd=clone, capture_output=True, text=True)


def test_each_call_leaves_out_one_large_file_and_carries_its_parts(checkout: Path, bundle: Path) -> None:
    first = stage(checkout, "vae", str(bundle), "part-01", "part-03.tar.xz")
    assert first.returncode == 0, first.stderr
    assert not (checkout / VAE).exists() and (checkout / DIT).exists()
    carried = sorted(p.name for p in (checkout / ".bundle").iterdir())
    assert carried == ["MANIFEST.txt", "SHA256SUMS", "offline-install.sh", "part-01.tar.xz", "part-03.tar.xz"]
    assert (checkout / ".bundle/part-03.tar.xz").read_bytes() == (bundle / "part-03.tar.xz").read_bytes()
    assert "MiB (64 at most)" in first.stdout

    second = stage(checkout, "dit", str(bundle), "part-02")
    assert second.returncode == 0, second.stderr
    assert (checkout / VAE).exists() and not (checkout / DIT).exists()
    assert sorted(p.name for p in (checkout / ".bundle").glob("part-*")) == ["part-02.tar.xz"]

    done = stage(checkout, "none")
    assert done.returncode == 0, done.stderr
    assert not (checkout / ".bundle").exists()
    assert git(checkout, "status", "--porcelain", "--", str(MODEL)) == ""


def test_a_changed_model_file_is_never_overwritten(checkout: Path, bundle: Path) -> None:
    config = checkout / MODEL / "config.json"
    changed = config.read_text() + "\n"
    config.write_text(changed)
    result = stage(checkout, "vae", str(bundle), "part-01")
    assert result.returncode == 1
    assert "commit or move your changes first" in result.stderr and "config.json" in result.stderr
    assert config.read_text() == changed and (checkout / VAE).exists()


def test_a_call_over_the_transfer_limit_is_refused(checkout: Path, bundle: Path) -> None:
    with open(bundle / "part-04.tar.xz", "wb") as f:  # sparse: 64 MiB of size, no disk
        f.truncate(64 * 1048576)
    result = stage(checkout, "vae", str(bundle), "part-04")
    assert result.returncode == 1 and "too large" in result.stderr


def test_an_unknown_choice_says_what_to_pass(checkout: Path) -> None:
    result = stage(checkout, "decoder")
    assert result.returncode == 2 and "'vae' or 'dit'" in result.stderr


def test_the_bundle_must_be_a_folder_other_than_the_one_it_fills(checkout: Path, bundle: Path) -> None:
    assert stage(checkout, "vae", str(bundle), "part-01").returncode == 0
    kept = (checkout / ".bundle/part-01.tar.xz").read_bytes()
    result = stage(checkout, "dit", str(checkout / ".bundle"), "part-01")
    assert result.returncode == 2 and "not .bundle" in result.stderr
    assert (checkout / ".bundle/part-01.tar.xz").read_bytes() == kept  # refused before anything changed
    assert not (checkout / VAE).exists()
    missing = stage(checkout, "dit")
    assert missing.returncode == 2 and "bundle's folder" in missing.stderr

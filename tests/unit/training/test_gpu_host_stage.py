"""scripts/gpu-host-train-embedded.sh: each GPU-host call's carry (stage), the call itself (on CPU) and collect."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[3]
SCRIPT = "scripts/gpu-host-train-embedded.sh"
MODEL = Path("wanray/embedded_model")
VAE = MODEL / "Wan2.1_VAE.pth"
DIT = MODEL / "diffusion_pytorch_model-00001-of-00001.safetensors"
# a tiny run: 2 rendered entries, 5-frame clips of 16x16 crops, 2 per step (the script's settings, as environment)
TINY = {"ENTRIES": "2", "CROP": "16", "CLIP_FRAMES": "5", "BATCH": "2", "STEPS": "3", "SAVE_EVERY": "1",
        "DEVICE": "cpu", "PY": sys.executable}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A throwaway clone holding this checkout's script and code (the stage step rewrites the clone's model folder)."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--shared", str(REPO), str(clone))
    for name in (SCRIPT, "scripts/gpu-host-install.sh"):
        shutil.copy(REPO / name, clone / name)
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    return clone


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle folder shaped like offline-bundle.sh's, with small random parts."""
    out = tmp_path / "bundle"
    out.mkdir()
    rng = np.random.default_rng()
    for name in ("part-01.tar.xz", "part-02.tar.xz"):
        (out / name).write_bytes(rng.bytes(int(rng.integers(1000, 5000))))
    for name in ("MANIFEST.txt", "SHA256SUMS", "offline-install.sh"):
        (out / name).write_text(name)
    return out


def script(clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(["bash", SCRIPT, *args], cwd=clone, capture_output=True, text=True,
                          env={**os.environ, **TINY, **env})


def step_of(folder: Path) -> int:
    return json.loads((folder / "trainer_state.json").read_text())["step"]


def test_stage_carries_a_step_0_checkpoint_and_the_parts_not_the_large_files(checkout: Path, bundle: Path) -> None:
    first = script(checkout, "stage", str(bundle), "part-02")
    assert first.returncode == 0, first.stderr
    assert not (checkout / VAE).exists() and not (checkout / DIT).exists()
    carried = sorted(p.name for p in (checkout / ".bundle").iterdir())
    assert carried == ["MANIFEST.txt", "SHA256SUMS", "offline-install.sh", "part-02.tar.xz"]
    assert (checkout / ".bundle/part-02.tar.xz").read_bytes() == (bundle / "part-02.tar.xz").read_bytes()
    assert "MiB (64 at most): checkpoint at step 0" in first.stdout
    # the step-0 checkpoint is the shipped VAE, whole (the large file it replaces stays out of the carry)
    weights = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    assert step_of(checkout / ".ckpt") == 0 and "decoder.head.2.weight" in weights and "encoder.conv1.weight" in weights
    assert len((checkout / ".ckpt/run_id").read_text().strip()) == 36  # a uuid: the run its calls belong to
    assert git(checkout, "status", "--porcelain", "--ignored", "--", ".ckpt", ".bundle").count("!!") == 2

    done = script(checkout, "stage", "none")
    assert done.returncode == 0, done.stderr
    assert not (checkout / ".bundle").exists()
    assert git(checkout, "status", "--porcelain", "--", str(MODEL)) == ""


def test_decoder_mult_stages_a_wider_decoder_only_while_its_resumed_calls_fit_the_carry(checkout: Path,
                                                                                      bundle: Path) -> None:
    # the shipped decoder is (2,2,4,4), 8.6 M parameters (run 14); (2,3,4,4) is 9.4 M
    wider = script(checkout, "stage", str(bundle), "part-02", DECODER_MULT="2,3,4,4")
    assert wider.returncode == 0, wider.stderr
    weights = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    shipped = torch.load(REPO / VAE, map_location="cpu", weights_only=True)
    decoder_size = lambda tensors: sum(t.numel() for n, t in tensors.items() if n.startswith("decoder."))  # noqa: E731
    assert decoder_size(weights) > decoder_size(shipped) * 1.05
    assert json.loads((checkout / ".ckpt/vae_arch.json").read_text())["decoder_dim_mult"] == [2, 3, 4, 4]
    assert "the calls after it carry" in wider.stdout
    shutil.rmtree(checkout / ".ckpt")
    # 12.8 M decoder parameters: the step-0 checkpoint fits, but not with the moments the next calls carry
    too_wide = script(checkout, "stage", str(bundle), "part-02", DECODER_MULT="2,2,5,5")
    assert too_wide.returncode == 1 and "too large to resume" in too_wide.stderr, too_wide.stdout


def test_a_call_resumes_trains_and_packs_and_collect_takes_its_checkpoint(checkout: Path, bundle: Path,
                                                                         tmp_path: Path) -> None:
    assert script(checkout, "stage", str(bundle), "part-02").returncode == 0
    shutil.copytree(checkout / ".ckpt", checkout / ".ckpt.step0")
    out = tmp_path / "out"
    work = {"WORK": str(tmp_path / "work"), "SITE": str(tmp_path / "site")}
    call = script(checkout, "call", "300", str(out), **work)  # the venv has diffsynth: nothing to unpack
    assert call.returncode == 0, call.stdout[-3000:] + call.stderr[-3000:]
    assert "checkpoint at step 3" in call.stdout and "install:" in call.stdout
    pieces = sorted(out.glob("checkpoint.tar.part-*"))
    assert pieces and all(p.stat().st_size <= 15_000_000 for p in pieces) and len(pieces) + 1 <= 8
    assert "vae_decoder: step 3/3" in (out / "call.log").read_text()

    collected = script(checkout, "collect", str(out), "test-call")
    assert collected.returncode == 0, collected.stderr
    assert step_of(checkout / ".ckpt") == 3
    assert (checkout / ".ckpt/run_id").read_text() == (checkout / ".ckpt.step0/run_id").read_text()
    assert (checkout / "bench/results/embedded_calls/test-call.log").read_text() == (out / "call.log").read_text()
    # the decoder trained; the encoder (the shipped DiT's latent space) kept its weights, to bf16
    shipped = load_file(str(checkout / ".ckpt.step0/trainable.safetensors"))
    trained = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    assert trained.keys() == shipped.keys()
    assert all(torch.equal(trained[k], shipped[k]) for k in shipped if k.startswith("encoder."))
    assert any(not torch.equal(trained[k], shipped[k]) for k in shipped if k.startswith("decoder."))

    # a warm machine that kept this run's newer checkpoint (the last call's files were lost) resumes from it
    shutil.rmtree(checkout / ".ckpt")
    shutil.copytree(checkout / ".ckpt.step0", checkout / ".ckpt")
    again = script(checkout, "call", "300", str(tmp_path / "out2"), STEPS="4", **work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept step 3 of this run" in again.stdout
    assert "resumed at step 3" in again.stdout and "checkpoint at step 4" in again.stdout
    # but never from another run's: a new run (a new stage step) starts at its own step 0 on that machine
    shutil.rmtree(checkout / ".ckpt")
    assert script(checkout, "stage", str(bundle), "part-02").returncode == 0
    other = script(checkout, "call", "300", str(tmp_path / "out3"), **work)
    assert other.returncode == 0, other.stderr[-3000:]
    assert "kept step" not in other.stdout
    assert "resumed at step 0" in other.stdout and "checkpoint at step 3" in other.stdout


@pytest.mark.parametrize("vae_dim", ["", "40"], ids=["shipped-width", "widened-to-40"])
def test_a_whole_vae_call_trains_the_encoder_too_and_ships_the_vae(checkout: Path, bundle: Path, tmp_path: Path,
                                                                  vae_dim: str) -> None:
    # the whole VAE's 14 M parameters (23 M at width 40), with their moments, take a resumed call's carry past 64 MiB
    # beside a bundle part the size of the real one (7.5 MB): one call only
    (bundle / "part-02.tar.xz").write_bytes(np.random.default_rng().bytes(7_500_000))
    refused = script(checkout, "stage", str(bundle), "part-02", STAGE="vae", VAE_DIM=vae_dim)
    assert refused.returncode == 1 and "ONE_CALL=1" in refused.stderr, refused.stdout
    shutil.rmtree(checkout / ".ckpt")
    vae = {"STAGE": "vae", "ONE_CALL": "1", "VAE_DIM": vae_dim}
    staged = script(checkout, "stage", str(bundle), "part-02", **vae)
    assert staged.returncode == 0, staged.stderr
    # no step-0 checkpoint: the call widens the shipped VAE itself, whose file stays in the carry (the DiT's does not)
    assert [p.name for p in (checkout / ".ckpt").iterdir()] == ["run_id"]
    assert (checkout / VAE).exists() and not (checkout / DIT).exists()
    assert "(64 at most): the shipped VAE" in staged.stdout
    out = tmp_path / "out"
    call = script(checkout, "call", "300", str(out), WORK=str(tmp_path / "work"), SITE=str(tmp_path / "site"), **vae)
    assert call.returncode == 0, call.stdout[-3000:] + call.stderr[-3000:]
    assert "carried: the shipped VAE" in call.stdout
    assert "vae: step 3/3" in (out / "call.log").read_text() and "checkpoint at step 3" in call.stdout
    assert script(checkout, "collect", str(out), "test-vae-call", **vae).returncode == 0
    trained = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    assert trained["encoder.conv1.weight"].shape[0] == int(vae_dim or 32)
    # the step 0 that call trained from: the same seeded widening, here, from the carried folder (no DiT in it)
    subprocess.run([sys.executable, "-m", "wanray.training.embedded", "--stage", "vae", "--vae-from",
                    str(checkout / MODEL), *(["--vae-dim", vae_dim] if vae_dim else []), "--entries", "2",
                    "--crop", "16", "--clip-frames", "5", "--max-seconds", "0", "--checkpoint-only",
                    "--checkpoint-precision", "portable", "--device", "cpu", "--out", str(tmp_path / "step0")],
                   cwd=tmp_path, check=True, capture_output=True)
    step0 = load_file(str(tmp_path / "step0/vae_stage/checkpoint/trainable.safetensors"))
    assert trained.keys() == step0.keys()
    for part in ("encoder.", "decoder."):  # the whole VAE trains: the shipped DiT's latents change with it
        assert any(not torch.equal(trained[k], step0[k]) for k in step0 if k.startswith(part)), part
    assert not (checkout / ".ckpt/optimizer.pt").exists()  # a one-call run's files come back without the moments
    # the run's next call, on a bare machine, resumes those weights with fresh moments, on the same schedule
    restaged = script(checkout, "stage", str(bundle), "part-02", **vae)
    assert restaged.returncode == 0 and "(64 at most): checkpoint at step 3" in restaged.stdout, restaged.stderr
    again = script(checkout, "call", "300", str(tmp_path / "out2"), STEPS="4", WORK=str(tmp_path / "work2"),
                   SITE=str(tmp_path / "site"), **vae)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed at step 3" in again.stdout and "with fresh Adam moments" in again.stdout
    assert "checkpoint at step 4" in again.stdout
    assert script(checkout, "collect", str(tmp_path / "out2"), "test-vae-call2", **vae).returncode == 0
    resumed = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    assert step_of(checkout / ".ckpt") == 4 and any(not torch.equal(resumed[k], trained[k]) for k in trained)
    trained = resumed

    assert script(checkout, "stage", "none").returncode == 0
    shipped = script(checkout, "ship", **vae)
    assert shipped.returncode == 0, shipped.stderr
    spec = MODEL / "wanray_spec.json"
    changed = ["M", str(VAE)] + (["M", str(spec)] if vae_dim else [])  # a wider VAE: the spec takes its width
    assert git(checkout, "status", "--porcelain", "--", str(MODEL)).split() == changed
    written = torch.load(checkout / VAE, map_location="cpu", weights_only=True)
    assert written.keys() == trained.keys() and all(torch.equal(written[k], v) for k, v in trained.items())
    assert json.loads((checkout / spec).read_text())["vae"]["dim"] == int(vae_dim or 32)


def test_a_dit_call_carries_the_vae_encoder_rebuilds_the_model_and_trains_the_dit(checkout: Path, bundle: Path,
                                                                                  tmp_path: Path) -> None:
    dit = {"STAGE": "dit"}
    staged = script(checkout, "stage", str(bundle), "part-02", **dit)
    assert staged.returncode == 0, staged.stderr
    assert "checkpoint at step 0" in staged.stdout
    shipped_vae = torch.load(REPO / VAE, map_location="cpu", weights_only=True)
    encoder = load_file(str(checkout / ".frozen/vae_encoder.safetensors"))
    assert encoder and all(k.startswith(("encoder.", "conv1.")) for k in encoder)  # the half that encoding runs
    assert all(torch.equal(v, shipped_vae[k]) for k, v in encoder.items())  # shipped in bf16: the same values
    step0 = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    assert {k.split(".")[0] for k in step0} == {"dit", "vace"}
    # a VAE stage's step must not pick up the DiT's checkpoint
    other = script(checkout, "stage", str(bundle), "part-02")
    assert other.returncode == 1 and "another stage's checkpoint" in other.stderr

    out = tmp_path / "out"
    call = script(checkout, "call", "300", str(out), WORK=str(tmp_path / "work"), SITE=str(tmp_path / "site"), **dit)
    assert call.returncode == 0, call.stdout[-3000:] + call.stderr[-3000:]
    log = (out / "call.log").read_text()
    assert "dit: step 3/3" in log and "checkpoint at step 3" in log and "2 entries (seed 19" in log
    assert script(checkout, "collect", str(out), "test-dit-call", **dit).returncode == 0
    trained = load_file(str(checkout / ".ckpt/trainable.safetensors"))
    assert trained.keys() == step0.keys() and any(not torch.equal(trained[k], step0[k]) for k in step0)

    shipped = script(checkout, "ship", **dit)
    assert shipped.returncode == 0, shipped.stderr
    assert git(checkout, "status", "--porcelain", "--", str(MODEL)).split() == ["M", str(DIT)]
    written = load_file(str(checkout / DIT))
    assert all(torch.equal(written[k.partition(".")[2]], v) for k, v in trained.items())


def test_a_changed_model_file_is_never_overwritten(checkout: Path, bundle: Path) -> None:
    config = checkout / MODEL / "config.json"
    changed = config.read_text() + "\n"
    config.write_text(changed)
    result = script(checkout, "stage", str(bundle), "part-01")
    assert result.returncode == 1
    assert "commit or move your changes first" in result.stderr and "config.json" in result.stderr
    assert config.read_text() == changed and (checkout / VAE).exists()


def test_a_call_over_the_transfer_limit_is_refused(checkout: Path, bundle: Path) -> None:
    with open(bundle / "part-04.tar.xz", "wb") as f:  # sparse: 64 MiB of size, no disk
        f.truncate(64 * 1048576)
    result = script(checkout, "stage", str(bundle), "part-04")
    assert result.returncode == 1 and "too large" in result.stderr


def test_the_bundle_must_be_a_folder_other_than_the_one_it_fills(checkout: Path, bundle: Path) -> None:
    assert script(checkout, "stage", str(bundle), "part-01").returncode == 0
    kept = (checkout / ".bundle/part-01.tar.xz").read_bytes()
    result = script(checkout, "stage", str(checkout / ".bundle"), "part-01")
    assert result.returncode == 2 and "not .bundle" in result.stderr
    assert (checkout / ".bundle/part-01.tar.xz").read_bytes() == kept  # refused before anything changed
    missing = script(checkout, "stage")
    assert missing.returncode == 2 and "bundle's folder" in missing.stderr

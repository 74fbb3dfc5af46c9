"""The embedded model's two training stages (python -m wanray.training.embedded), tiny, on CPU."""

import json

import pytest
import torch
from safetensors.torch import load_file

from wanray.generation import EMBEDDED_MODEL_DIR
from wanray.training.embedded import main
from wanray.training.state import TrainerState


def _stage_step(out, stage):
    return TrainerState.load(out / f"{stage}_stage" / "checkpoint").step


def _vae_weights(model_dir):
    return torch.load(model_dir / "Wan2.1_VAE.pth", map_location="cpu", weights_only=True)


def test_vae_then_dit_stage_write_a_model_trained_from_the_latent_cache(tiny_dance_set, tmp_path):
    out = tmp_path / "embedded"
    common = ["--data", str(tiny_dance_set), "--out", str(out), "--size", "64", "--save-every", "2"]
    vae_args = ["--batch", "2", "--crop", "32", "--clip-frames", "5"]
    # a new VAE of another width than the bundled one (8: a fast test), crops centred on the dancer
    assert main(["--stage", "vae", *common, "--steps", "2", *vae_args, "--vae-dim", "8", "--focus", "1"]) == 0
    bundled, trained = _vae_weights(EMBEDDED_MODEL_DIR), _vae_weights(out / "model_vae")
    # Wan's layout, as the bundled file's (whose wider decoder has a shortcut more where a stage widens)
    assert trained.keys() <= bundled.keys()
    assert all("shortcut" in k for k in bundled.keys() - trained.keys())
    assert trained["encoder.conv1.weight"].shape[0] == 8 != bundled["encoder.conv1.weight"].shape[0]
    assert json.loads((out / "model_vae" / "wanray_spec.json").read_text())["vae"]["dim"] == 8
    assert _stage_step(out, "vae") == 2

    # --max-seconds (the loop's max_time_s): out of time at the first check (every 10 steps), far before --steps
    assert main(["--stage", "dit", *common, "--steps", "500", "--frames", "5", "--max-seconds", "0.001",
                 "--save-every", "100", "--batch", "2", "--set", "strategy.gradient_checkpointing=false"]) == 0
    # 2 samples per step: 3 steps per pass of 7 rows
    latest = max(p for p in (out / "dit_stage").glob("checkpoint_*") if p.is_dir())  # Ray names them by time
    state = TrainerState.load(latest)
    assert state.step == 10 and state.samples_seen == 20
    assert (state.pass_index, state.rows_done) == (3, 2)  # 10 steps = 3 passes of 3 steps, then 1 step of 2 rows
    assert state.train_seconds > 0.001
    # the same command again resumes with the budget already spent: no more steps, the same weights
    dit_file = out / "model" / "diffusion_pytorch_model-00001-of-00001.safetensors"
    trained = load_file(str(dit_file))
    assert main(["--stage", "dit", *common, "--steps", "500", "--frames", "5", "--max-seconds", "0.001",
                 "--save-every", "100", "--batch", "2", "--set", "strategy.gradient_checkpointing=false"]) == 0
    assert max(p for p in (out / "dit_stage").glob("checkpoint_*") if p.is_dir()) == latest
    assert all(torch.equal(v, load_file(str(dit_file))[k]) for k, v in trained.items())
    run_config = json.loads((out / "dit_stage" / "train_config.json").read_text())
    assert run_config["data"]["batch_size"] == 2 and run_config["strategy"]["gradient_checkpointing"] is False
    assert list((out / "latents").glob("*/train.json"))  # encoded once, by the trained VAE
    before = load_file(str(out / "model_vae" / "diffusion_pytorch_model-00001-of-00001.safetensors"))
    after = load_file(str(out / "model" / "diffusion_pytorch_model-00001-of-00001.safetensors"))
    assert before.keys() <= after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(_vae_weights(out / "model")["encoder.conv1.weight"],
                       _vae_weights(out / "model_vae")["encoder.conv1.weight"])

    # the decoder-only stage: longer clips, the encoder (so the latents the DiT learned) untouched
    vae_before = _vae_weights(out / "model")
    # --checkpoint-only (beside a running DiT stage): trains, writes no model folder
    assert main(["--stage", "vae-decoder", *common, "--steps", "1", *vae_args[:-1], "9", "--checkpoint-only"]) == 0
    assert all(torch.equal(v, _vae_weights(out / "model")[k]) for k, v in vae_before.items())
    # --max-seconds 0: resumes, trains no step, writes the checkpoint's VAE
    assert main(["--stage", "vae-decoder", *common, "--steps", "100", *vae_args[:-1], "9", "--max-seconds", "0"]) == 0
    assert _stage_step(out, "vae_decoder") == 1
    assert any(not torch.equal(v, _vae_weights(out / "model")[k]) for k, v in vae_before.items())
    # rerun with more steps: resumes at its checkpoint (the vae stage shares this code)
    assert main(["--stage", "vae-decoder", *common, "--steps", "2", *vae_args[:-1], "9"]) == 0
    assert _stage_step(out, "vae_decoder") == 2
    vae_after = _vae_weights(out / "model")
    assert all(torch.equal(vae_before[k], vae_after[k]) for k in vae_before if not k.startswith(("decoder.", "conv2.")))
    assert any(not torch.equal(vae_before[k], vae_after[k]) for k in vae_before if k.startswith("decoder."))
    assert all(torch.equal(v, _vae_weights(out / "model_vae")[k]) for k, v in vae_after.items())



def test_vae_stage_continues_a_given_vae_on_a_cosine_rate(tiny_dance_set, tmp_path):
    common = ["--stage", "vae", "--data", str(tiny_dance_set), "--size", "64", "--batch", "2", "--crop", "32",
              "--clip-frames", "5"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*common, "--out", str(first), "--steps", "0", "--vae-dim", "8"]) == 0  # a new, untrained VAE
    source = _vae_weights(first / "model_vae")
    with pytest.raises(ValueError, match=r"--vae-dim 4 would narrow .* \(base width 8\)"):
        main([*common, "--out", str(second), "--steps", "1", "--vae-from", str(first / "model_vae"), "--vae-dim", "4"])

    assert main([*common, "--out", str(second), "--steps", "2", "--lr", "1e-3", "--cosine", "--save-every", "2",
                 "--vae-from", str(first / "model_vae")]) == 0
    assert _stage_step(second, "vae") == 2
    optimizer = torch.load(second / "vae_stage" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert abs(optimizer["param_groups"][0]["lr"] - 5e-4) < 1e-12  # the 2nd of 2 steps: half-way down
    trained = _vae_weights(second / "model_vae")
    assert json.loads((second / "model_vae" / "wanray_spec.json").read_text())["vae"]["dim"] == 8
    assert trained.keys() == source.keys()
    # continued from the given weights: 2 Adam steps of <= 1e-3 move each weight by ~1e-3, a new init by far more
    drift = max(float((trained[k].float() - source[k].float()).abs().max()) for k in source if source[k].is_floating_point())
    assert 0 < drift < 4e-3

    # a larger --vae-dim widens the given VAE (its function kept: wanray.training.vae_widen), and a resumed run
    # keeps the checkpoint's width
    wide = tmp_path / "wide"
    widen = [*common, "--out", str(wide), "--vae-from", str(first / "model_vae")]
    assert main([*widen, "--steps", "1", "--vae-dim", "12", "--checkpoint-only"]) == 0
    with pytest.raises(ValueError, match="holds a VAE of base width 12, not 16"):
        main([*widen, "--steps", "2", "--vae-dim", "16"])
    assert main([*widen, "--steps", "2"]) == 0
    assert _stage_step(wide, "vae") == 2
    assert json.loads((wide / "model_vae" / "wanray_spec.json").read_text())["vae"]["dim"] == 12
    widened = _vae_weights(wide / "model_vae")
    assert widened.keys() == source.keys()
    assert widened["encoder.conv1.weight"].shape[0] == 12 and source["encoder.conv1.weight"].shape[0] == 8
    old_rows = widened["encoder.conv1.weight"][:8].float() - source["encoder.conv1.weight"].float()
    assert 0 < float(old_rows.abs().max()) < 4e-3  # the old channels, moved by 2 small steps

    # --warmup: the rate climbs linearly to its peak first, then the cosine (the Ray Train loop's schedule)
    warm = tmp_path / "warm"
    assert main([*common, "--out", str(warm), "--steps", "3", "--warmup", "3", "--lr", "1e-3", "--cosine",
                 "--save-every", "3", "--vae-from", str(first / "model_vae")]) == 0
    optimizer = torch.load(warm / "vae_stage" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert abs(optimizer["param_groups"][0]["lr"] - 1e-3) < 1e-12  # step 3 of 3 warm-up steps: the peak, where the
    # cosine alone would be at a quarter of it



def test_a_vae_stage_split_over_calls_ends_where_the_uninterrupted_run_does(tmp_path):
    """The GPU host's calls (scripts/gpu-host-train-embedded.sh) on CPU: a set rendered in memory from its seed, a run
    stopped and resumed from its (exact) checkpoint gives the same weights as one run of the same steps."""
    import random

    data_seed = random.randrange(1000, 100_000)  # any set: the batches are drawn from (seed, step) alone
    common = ["--stage", "vae-decoder", "--entries", "2", "--data-seed", str(data_seed), "--size", "64",
              "--batch", "2", "--crop", "16", "--clip-frames", "5", "--vae-from", str(EMBEDDED_MODEL_DIR),
              "--checkpoint-only", "--save-every", "100"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*common, "--out", str(whole), "--steps", "3"]) == 0
    assert main([*common, "--out", str(split), "--steps", "3", "--max-seconds", "0"]) == 0  # a call out of time
    assert _stage_step(split, "vae_decoder") == 0
    for steps in (1, 3):  # two more calls, each ended early (--steps here; --max-seconds on the host)
        assert main([*common, "--out", str(split), "--steps", str(steps)]) == 0
        assert _stage_step(split, "vae_decoder") == steps
    a = load_file(str(whole / "vae_decoder_stage/checkpoint/trainable.safetensors"))
    b = load_file(str(split / "vae_decoder_stage/checkpoint/trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    shipped = _vae_weights(EMBEDDED_MODEL_DIR)
    assert any(not torch.equal(a[k], shipped[k].float()) for k in a if k.startswith("decoder."))


def test_the_dit_stage_in_memory_split_over_calls_ends_where_the_uninterrupted_run_does(tmp_path):
    """The DiT stage as the GPU host runs it (no files, no Ray), on CPU: rendered from a random seed, encoded once and
    kept, a cosine over --steps; a run cut by --max-seconds and --until and resumed from its exact checkpoint ends on
    the weights of one run of the same steps, and its model folder holds them."""
    import random

    from wanray.training.embedded_dit import dit_file_state
    from wanray.training.checkpoint import load_checkpoint

    data_seed = random.randrange(1000, 100_000)
    common = ["--stage", "dit", "--entries", "3", "--data-seed", str(data_seed), "--size", "32", "--frames", "5",
              "--batch", "2", "--steps", "4", "--lr", "1e-3", "--save-every", "100"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*common, "--out", str(whole), "--checkpoint-only"]) == 0
    assert main([*common, "--out", str(split), "--checkpoint-only", "--max-seconds", "0"]) == 0  # out of time at once
    assert _stage_step(split, "dit") == 0 and not list(split.glob("rows-*"))  # nothing rendered for no step
    for until in (1, 3):  # two calls cut short, then the last one runs to --steps and writes the model
        assert main([*common, "--out", str(split), "--checkpoint-only", "--until", str(until)]) == 0
        assert _stage_step(split, "dit") == until
    assert len(list(split.glob("rows-*.safetensors"))) == 1  # encoded once, then loaded by each later call
    assert main([*common, "--out", str(split)]) == 0

    a = load_file(str(whole / "dit_stage/checkpoint/trainable.safetensors"))
    b = load_file(str(split / "dit_stage/checkpoint/trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = TrainerState.load(split / "dit_stage/checkpoint")
    assert state.step == 4 and state.samples_seen == 8 and (state.pass_index, state.rows_done) == (2, 2)
    assert [h["step"] for h in state.history] == [1, 3, 4]  # each call's last step is logged
    assert state.history[-1]["lr"] == 0  # the cosine's end, though the run came in three pieces

    shipped = load_file(str(EMBEDDED_MODEL_DIR / "diffusion_pytorch_model-00001-of-00001.safetensors"))
    written = load_file(str(split / "model/diffusion_pytorch_model-00001-of-00001.safetensors"))
    trained = dit_file_state(load_checkpoint(split / "dit_stage/checkpoint"))
    assert written.keys() == shipped.keys() == trained.keys()
    assert all(torch.equal(written[k], trained[k]) for k in written)
    assert any(not torch.equal(written[k], shipped[k].float()) for k in ("head.head.weight", "vace_blocks.0.after_proj.weight"))


def test_the_vae_stages_train_on_the_squared_error_with_loss_mse(tmp_path):
    """``--loss mse``: the loss of step 1 is the mean squared error of that batch's round trip, which PSNR measures
    (``l1``, the default, logs the mean absolute error of the same round trip)."""
    import random

    from wanray.loading import load_model_dir
    from wanray.specs import spec_for_dir
    from wanray.training.embedded import ClipSampler, _target_videos

    data_seed, seed = random.randrange(1000, 100_000), random.randrange(1000)
    common = ["--stage", "vae-decoder", "--entries", "2", "--data-seed", str(data_seed), "--size", "64", "--batch", "2",
              "--crop", "16", "--clip-frames", "5", "--vae-from", str(EMBEDDED_MODEL_DIR), "--checkpoint-only",
              "--steps", "1", "--seed", str(seed)]
    for kind in ("l1", "mse"):
        assert main([*common, "--out", str(tmp_path / kind), "--loss", kind]) == 0
    logged = {kind: TrainerState.load(tmp_path / kind / "vae_decoder_stage" / "checkpoint").history[0]["loss"]
              for kind in ("l1", "mse")}

    vae = load_model_dir(EMBEDDED_MODEL_DIR, spec_for_dir(EMBEDDED_MODEL_DIR)).vae
    model = vae.model.float()
    videos = _target_videos(None, 2, data_seed, 64, 77)
    x = ClipSampler(videos, frames=5, seed=seed, batch=2, crop=16, focus=0.75).batch_at(0)  # [2, 3, 5, 16, 16]
    with torch.no_grad():
        error = model.decode(model.encode(x, vae.scale), vae.scale).clamp(-1, 1) - x
    assert abs(logged["l1"] - float(error.abs().mean())) < 1e-4
    assert abs(logged["mse"] - float(error.pow(2).mean())) < 1e-4
    assert logged["mse"] < logged["l1"]  # errors below 1: a different quantity, not the same one rescaled
    try:
        main([*common, "--out", str(tmp_path / "bad"), "--loss", "huber"])
    except SystemExit as exit_:
        assert exit_.code == 2  # argparse names the allowed choices
    else:
        raise AssertionError("an unknown --loss was accepted")


def test_the_decoder_stage_widens_the_decoder_resumes_it_and_ships_its_widths(tmp_path):
    """``--decoder-dim-mult``: the checkpoint holds the wider decoder and says so (``vae_arch.json``), a later call
    resumes it without the flag, and shipping it writes the widths into the model folder's spec."""
    import random
    import shutil

    import pytest

    from wanray.loading import load_model_dir
    from wanray.specs import spec_for_dir
    from wanray.training.embedded import vae_arch_of
    from wanray.training.gpu_host import ship

    out, ckpt = tmp_path / "out", tmp_path / "out" / "vae_decoder_stage" / "checkpoint"
    common = ["--stage", "vae-decoder", "--entries", "2", "--data-seed", str(random.randrange(1000, 100_000)),
              "--size", "64", "--batch", "2", "--crop", "16", "--clip-frames", "5", "--vae-from",
              str(EMBEDDED_MODEL_DIR), "--checkpoint-only", "--save-every", "100", "--out", str(out)]
    assert main([*common, "--steps", "1", "--decoder-dim-mult", "2,2,8,8"]) == 0  # shipped: 2,2,4,4
    assert vae_arch_of(ckpt, None).decoder_dim_mult == (2, 2, 8, 8)
    shipped = _vae_weights(EMBEDDED_MODEL_DIR)
    assert load_file(str(ckpt / "trainable.safetensors"))["decoder.conv1.weight"].shape[0] == 2 * shipped[
        "decoder.conv1.weight"].shape[0]
    assert main([*common, "--steps", "2"]) == 0  # the next call: no flag, the checkpoint knows its widths
    assert _stage_step(out, "vae_decoder") == 2
    with pytest.raises(ValueError, match="leave --decoder-dim-mult out to resume it"):
        main([*common, "--steps", "3", "--decoder-dim-mult", "2,2,6,6"])
    with pytest.raises(SystemExit):  # argparse: four positive integers
        main([*common, "--steps", "3", "--decoder-dim-mult", "1,2,8"])

    model = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL_DIR, model)
    ship("vae-decoder", ckpt, model)
    spec = spec_for_dir(model)
    assert spec.vae.decoder_dim_mult == (2, 2, 8, 8) and spec.dit == spec_for_dir(EMBEDDED_MODEL_DIR).dit
    vae = load_model_dir(model, spec).vae  # the loader checks every shape against the spec
    written = vae.model.state_dict()
    assert written["decoder.conv1.weight"].shape[0] == 2 * shipped["decoder.conv1.weight"].shape[0]
    assert all(torch.equal(written[k], shipped[k]) for k in shipped if k.startswith(("encoder.", "conv1.")))

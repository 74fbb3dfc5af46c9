import json
import subprocess
import sys

import imageio.v3 as iio
import pytest

from wanray.cli import main


def test_generate_writes_mp4_and_prints_path(photo, tmp_path, capsys):
    out = tmp_path / "fairy.mp4"
    code = main(["generate", "--image", str(photo), "--prompt", "a dancer", "--out", str(out), "--frames", "5",
                 "--height", "64", "--width", "64", "--steps", "1", "--no-progress", "--seed", "3"])
    assert code == 0
    assert str(out.resolve()) in capsys.readouterr().out
    assert iio.imread(out).shape == (5, 64, 64, 3)


def test_bad_frames_fail_fast_with_the_fix(photo, tmp_path, capsys):
    code = main(["generate", "--image", str(photo), "--prompt", "x", "--out", str(tmp_path / "a.mp4"),
                 "--frames", "75"])
    assert code == 1
    err = capsys.readouterr().err
    assert "use 73 or 77" in err and "Traceback" not in err


def test_missing_lora_file(photo, tmp_path, capsys):
    code = main(["generate", "--image", str(photo), "--prompt", "x", "--out", str(tmp_path / "a.mp4"),
                 "--lora", str(tmp_path / "missing.safetensors:0.7")])
    assert code == 1 and "missing.safetensors' does not exist" in capsys.readouterr().err


def test_help_explains_options():
    out = subprocess.run([sys.executable, "-m", "wanray", "generate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--lora", "--tea-cache", "--tiled-vae", "--no-tiled-vae", "--attention", "4n+1", "--few-step",
                   "--vae-dtype"):
        assert option in out.stdout


def test_dance_drives_the_vace_branch(photo, tmp_path, capsys):
    info = tmp_path / "info.json"
    common = ["generate", "--image", str(photo), "--prompt", "a dancer", "--frames", "5", "--height", "64",
              "--width", "64", "--steps", "1", "--no-progress", "--seed", "4"]
    assert main([*common, "--out", str(tmp_path / "plain.mp4")]) == 0
    assert main([*common, "--out", str(tmp_path / "wave.mp4"), "--dance", "wave", "--info-json", str(info)]) == 0
    plain, wave = iio.imread(tmp_path / "plain.mp4"), iio.imread(tmp_path / "wave.mp4")
    assert plain.shape == wave.shape and (plain != wave).any()
    assert main([*common, "--out", str(tmp_path / "x.mp4"), "--dance", "tango"]) == 1
    assert "choose one of: wave" in capsys.readouterr().err


def test_few_step_sets_the_distillation_settings_and_explicit_flags_win(photo, tmp_path):
    info = tmp_path / "info.json"
    common = ["generate", "--image", str(photo), "--prompt", "a dancer", "--frames", "5", "--height", "64",
              "--width", "64", "--no-progress", "--out", str(tmp_path / "x.mp4"), "--info-json", str(info)]
    assert main([*common, "--few-step"]) == 0
    ran = json.loads(info.read_text())
    assert (ran["steps"], ran["cfg"], ran["sampler"]) == (4, 1.0, "renoise")
    assert main([*common, "--few-step", "--steps", "2", "--sampler", "euler"]) == 0
    ran = json.loads(info.read_text())
    assert (ran["steps"], ran["cfg"], ran["sampler"]) == (2, 1.0, "euler")


def test_vae_dtype_reaches_the_generator_and_a_wrong_one_is_refused(photo, tmp_path, capsys):
    info = tmp_path / "info.json"
    common = ["generate", "--image", str(photo), "--prompt", "a dancer", "--frames", "5", "--height", "64",
              "--width", "64", "--steps", "1", "--no-progress", "--out", str(tmp_path / "x.mp4")]
    for vae_dtype in ("float32", "bfloat16"):
        assert main([*common, "--vae-dtype", vae_dtype, "--info-json", str(info)]) == 0
        assert json.loads(info.read_text())["vae_dtype"] == vae_dtype
    with pytest.raises(SystemExit) as exit:  # argparse's usage error
        main([*common, "--vae-dtype", "fp16"])
    assert exit.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "steps must be a whole number from 1"),
    (["--fps", "0"], "fps must be from 1 to 60"),  # the demo renders its dance at this rate: checked before
    (["--seed", str(2**64)], "seed must be a whole number from 0"),
    (["--vace-reference", "PHOTO"], "is image-to-video"),
    (["--fp8-storage", "--lora", "PHOTO"], "LoRAs cannot be applied to fp8-stored weights"),  # any existing file
])
def test_a_bad_request_is_refused_before_the_model_loads(photo, tmp_path, capsys, monkeypatch, flags, message):
    import wanray.generation

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was checked")

    monkeypatch.setattr(wanray.generation.WanGenerator, "load", no_loading)
    flags = [str(photo) if f == "PHOTO" else f for f in flags]
    assert main(["demo", "--out", str(tmp_path / "a.mp4"), "--frames", "5", "--no-progress", *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

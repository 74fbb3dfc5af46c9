"""--fp8-compute (torchao float8 matmuls in generation): refused where it cannot run, with what it needs; on CPU,
with torchao's float8 kernels let through, the result passes the acceleration gate against bfloat16."""

import pytest
import torch
from safetensors.torch import save_file

from wanray import accel
from wanray.attention import BackendUnavailable
from wanray.config import GenerationConfig, LoraRef, ModelConfig
from wanray.video import frames_to_array

NEEDS = "needs a CUDA GPU of compute capability >= 8.9"


def test_storage_and_compute_together_are_refused():
    with pytest.raises(ValueError, match="pick one"):
        ModelConfig(fp8_storage=True, fp8_compute=True)


def test_on_cpu_it_is_refused_before_loading_with_what_it_needs():
    from wanray.generation import WanGenerator

    with pytest.raises(BackendUnavailable, match=f"--fp8-compute {NEEDS}.*the device is cpu"):
        WanGenerator.load(ModelConfig(fp8_compute=True, device="cpu"))


def test_cli_reports_it_without_a_traceback(photo, tmp_path, capsys):
    from wanray.cli import main

    code = main(["generate", "--image", str(photo), "--prompt", "x", "--out", str(tmp_path / "a.mp4"),
                 "--device", "cpu", "--fp8-compute"])
    err = capsys.readouterr().err
    assert code == 1 and NEEDS in err and "Traceback" not in err


def test_an_older_gpu_is_named_with_its_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(BackendUnavailable, match=r"cuda:0 \(NVIDIA A100-SXM4-80GB\) has 8\.0"):
        accel.check_fp8_compute("cuda:0")


def test_missing_torchao_names_the_install_command(without_torchao):
    with pytest.raises(BackendUnavailable, match=r"torchao, which is not installed: pip install 'wanray\[fp8\]'"):
        accel.check_fp8_compute("cpu", "--fp8-compute")


@pytest.fixture
def cpu_float8(monkeypatch):
    """Let float8 inference run on this CPU: our device check off (tests only) and torchao's hardware assert
    off. The arithmetic is torchao's float8 quantization, as on a GPU; only the speed differs."""
    from torchao.quantization import quant_api  # torchao is installed with wanray[all] (the fp8 extra)

    monkeypatch.setattr(accel, "_EMULATE_FP8", True)
    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda *a, **k: None)


def test_float32_is_refused(cpu_float8):
    from wanray.generation import WanGenerator

    with pytest.raises(ValueError, match="--fp8-compute needs --dtype bfloat16"):
        WanGenerator.load(ModelConfig(fp8_compute=True, device="cpu", dtype="float32"))


def test_fp8_compute_passes_the_acceleration_gate(cpu_float8, photo, tmp_path):
    from wanray.generation import WanGenerator
    from wanray.metrics import acceleration_gate
    from wanray.model_writer import write_random_model_dir
    from wanray.specs import embedded

    # Freshly initialised embedded-size weights: the trained embedded model only passes at its own size
    # (128x128x9, 4 steps: 225 s here, too slow for CI); at 32x32 its outputs are far from anything it learned.
    model = str(write_random_model_dir(tmp_path / "model", embedded(), seed=int(torch.randint(0, 1000, ()))))
    base = WanGenerator.load(ModelConfig(model=model, device="cpu", dtype="bfloat16"))
    fp8 = WanGenerator.load(ModelConfig(model=model, device="cpu", dtype="bfloat16", fp8_compute=True))
    for layer in (fp8.pipe.dit.blocks[0].self_attn.q, fp8.pipe.vace.vace_blocks[0].ffn[0]):
        assert type(layer.weight).__name__ == "Float8Tensor"
    assert type(fp8.pipe.dit.head.head.weight) is torch.nn.Parameter  # the head stays in bfloat16
    request = GenerationConfig(image=photo, prompt="a girl dances the wave", height=32, width=32, frames=5, steps=2)
    reference = frames_to_array(base.generate(request).frames)
    result = fp8.generate(request)
    gate = acceleration_gate(frames_to_array(result.frames), reference)
    assert gate.passed, gate.reasons  # measured: PSNR ~43 dB, SSIM ~0.997 (gate: 32 dB, 0.85)
    assert result.info["fp8_compute"] is True and result.info["fp8_storage"] is False

    # LoRA pairs run on top of the float8 weights; a full delta cannot change them, and says so
    delta = tmp_path / "delta.safetensors"
    save_file({"blocks.0.self_attn.q.diff": torch.zeros(192, 192)}, str(delta))
    with pytest.raises(ValueError, match="float8-quantized"):
        fp8.set_loras((LoraRef(path=delta),))
    assert fp8.loras == ()

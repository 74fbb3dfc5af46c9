import pytest
import torch

from wanray import accel


@pytest.mark.parametrize("stride,padding", [((1, 1, 1), (1, 1, 1)), ((2, 1, 1), (0, 0, 0)), ((1, 2, 2), (0, 1, 1))])
def test_conv3d_as_batched_conv2d_is_the_same_arithmetic(stride, padding):
    conv = torch.nn.Conv3d(5, 7, 3, stride=stride, padding=padding)
    x = torch.randn(2, 5, 7, 12, 10)  # [B, C, T, H, W]
    with torch.no_grad():
        expected = conv(x)
        got = accel._conv3d_as_conv2d(conv, x, conv.weight, conv.bias)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv2d_faster", [True, False])
def test_the_vae_takes_the_batched_conv2d_path_only_where_it_is_faster(monkeypatch, conv2d_faster):
    monkeypatch.setattr(accel, "conv2d_beats_conv3d_on_this_cpu", lambda: conv2d_faster)
    as_conv2d = []
    real = accel._conv3d_as_conv2d
    monkeypatch.setattr(accel, "_conv3d_as_conv2d", lambda *a: as_conv2d.append(a) or real(*a))
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.Conv3d(4, 2, 1))
    x = torch.randn(1, 3, 5, 8, 8)
    with torch.no_grad():
        before = model(x)
        changed = accel.speed_up_cpu_conv3d(model)
        after = model(x)
    assert changed == 2
    assert len(as_conv2d) == (2 if conv2d_faster else 0)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_loading_does_not_time_the_convolutions_the_first_cpu_call_does():
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    conv = torch.nn.Conv3d(3, 4, 3)
    accel.speed_up_cpu_conv3d(conv)
    assert accel.conv2d_beats_conv3d_on_this_cpu.cache_info().misses == 0  # a GPU host never pays for the timing
    with torch.no_grad():
        conv(torch.randn(1, 3, 5, 8, 8))
    assert accel.conv2d_beats_conv3d_on_this_cpu.cache_info().misses == 1


def test_the_timing_names_a_path_and_is_taken_once_per_process():
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    first = accel.conv2d_beats_conv3d_on_this_cpu()
    assert isinstance(first, bool) and accel.conv2d_beats_conv3d_on_this_cpu() is first
    assert accel.conv2d_beats_conv3d_on_this_cpu.cache_info().hits == 1


@pytest.mark.parametrize("pinned,conv2d", [("conv2d", True), ("conv3d", False)])
def test_a_pinned_form_is_taken_without_timing(monkeypatch, pinned, conv2d):
    monkeypatch.setenv(accel.CPU_CONV3D_ENV, pinned)
    monkeypatch.setattr(accel, "_best_of", lambda fn: pytest.fail("a pinned form must not be timed"))
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    try:
        assert accel.conv2d_beats_conv3d_on_this_cpu() is conv2d
    finally:
        accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()


def test_an_unknown_form_says_which_ones_there_are(monkeypatch):
    monkeypatch.setenv(accel.CPU_CONV3D_ENV, "conv4d")
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    with pytest.raises(ValueError, match="WANRAY_CPU_CONV3D='conv4d': conv3d, conv2d or auto"):
        accel.conv2d_beats_conv3d_on_this_cpu()
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()


@pytest.mark.parametrize("pinned", ["conv2d", "conv3d"])
def test_a_cpu_run_hands_its_workers_the_drivers_form(monkeypatch, tmp_path, pinned):
    """The workers of one run (a restarted one too) round the VAE's convolutions alike: they take the driver's form
    instead of each timing its own, which a busy box can tip either way."""
    from wanray.training.presets import embedded_lora
    from wanray.training.state import RunPlan
    from wanray.training.trainer import build_trainer

    monkeypatch.setenv(accel.CPU_CONV3D_ENV, pinned)
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    config = embedded_lora()
    config = type(config).from_dict({**config.to_dict(), "output_dir": str(tmp_path)})
    plan = RunPlan(rows=4, rows_per_worker=4, steps_per_pass=4, total_steps=4, source="pixels", source_reason="test")
    try:
        trainer = build_trainer(config, {}, plan)
    finally:
        accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    assert trainer.train_loop_config["cpu_conv3d"] == pinned  # Ray Train hands this dict to every worker

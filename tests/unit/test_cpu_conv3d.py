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
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.Conv3d(4, 2, 1))
    x = torch.randn(1, 3, 5, 8, 8)
    with torch.no_grad():
        before = model(x)
        changed = accel.speed_up_cpu_conv3d(model)
        after = model(x)
    assert changed == (2 if conv2d_faster else 0)
    assert all(("_conv_forward" in m.__dict__) == conv2d_faster for m in model)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_the_timing_names_a_path_and_is_taken_once_per_process():
    accel.conv2d_beats_conv3d_on_this_cpu.cache_clear()
    first = accel.conv2d_beats_conv3d_on_this_cpu()
    assert isinstance(first, bool) and accel.conv2d_beats_conv3d_on_this_cpu() is first
    assert accel.conv2d_beats_conv3d_on_this_cpu.cache_info().hits == 1

"""wanray.metrics against scikit-image, on fresh random videos."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from wanray.metrics import (
    PSNR_CAP,
    acceleration_gate,
    compare_videos,
    flicker,
    psnr_per_frame,
    to_grey,
)


def _video(rng, t=5, h=24, w=32):
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _noisy(rng, video, sigma):
    return np.clip(video.astype(np.float64) + rng.normal(0, sigma, video.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def rng():
    return np.random.default_rng()


def test_psnr_and_ssim_match_scikit_image_frame_by_frame(rng):
    ref = _video(rng, t=4, h=29, w=41)
    gen = _noisy(rng, ref, sigma=rng.uniform(5, 60))
    m = compare_videos(gen, ref)
    for t in range(len(ref)):
        assert m.psnr[t] == pytest.approx(peak_signal_noise_ratio(ref[t], gen[t], data_range=255), abs=1e-9)
        assert m.ssim_rgb[t] == pytest.approx(
            structural_similarity(ref[t], gen[t], data_range=255, channel_axis=-1), abs=1e-9
        )
        grey_ref, grey_gen = to_grey(ref[t : t + 1])[0], to_grey(gen[t : t + 1])[0]
        assert m.ssim[t] == pytest.approx(structural_similarity(grey_ref, grey_gen, data_range=255), abs=1e-9)
    assert m.psnr_mean == pytest.approx(np.mean(m.psnr)) and m.psnr_min == pytest.approx(np.min(m.psnr))
    assert m.ssim_mean == pytest.approx(np.mean(m.ssim)) and m.ssim_min == pytest.approx(np.min(m.ssim))
    assert m.ssim_rgb_mean == pytest.approx(np.mean(m.ssim_rgb))


def test_frames_smaller_than_the_ssim_window_are_refused(rng):
    tiny = _video(rng, h=6, w=32)
    with pytest.raises(ValueError, match="at least 7x7 pixels, got 6x32"):
        compare_videos(tiny, tiny)


def test_arithmetic_is_float_not_wrapping_uint8(rng):
    ref = np.full((3, 16, 16, 3), 3, np.uint8)
    gen = np.full((3, 16, 16, 3), 5, np.uint8)
    # |3 - 5| = 2 -> mse 4; uint8 arithmetic would give 254 or 2 depending on the order
    expected = 10 * np.log10(255**2 / 4)
    np.testing.assert_allclose(psnr_per_frame(gen, ref), expected)
    np.testing.assert_allclose(psnr_per_frame(ref, gen), expected)


def test_identical_frames_are_capped_and_ssim_one(rng):
    ref = _video(rng)
    m = compare_videos(ref.copy(), ref)
    assert np.all(m.psnr == PSNR_CAP)
    np.testing.assert_allclose(m.ssim, 1.0)
    np.testing.assert_allclose(m.ssim_rgb, 1.0)
    assert m.psnr_band == "high" and m.ssim_band == "good"


def test_a_single_bad_frame_shows_in_the_minimum_not_hidden_by_the_mean(rng):
    ref = _video(rng, t=6)
    gen = _noisy(rng, ref, sigma=2)
    gen[4] = _video(rng, t=1)[0]
    m = compare_videos(gen, ref)
    assert int(np.argmin(m.psnr)) == 4 and int(np.argmin(m.ssim)) == 4
    assert m.psnr_min < m.psnr_mean - 5


def test_generated_frames_are_resized_to_the_reference(rng):
    ref = np.repeat(np.repeat(_video(rng, h=12, w=16), 4, axis=1), 4, axis=2)  # blocky 48x64
    gen = np.repeat(np.repeat(ref, 2, axis=1), 2, axis=2)  # the same picture at 96x128
    m = compare_videos(gen, ref)
    assert m.frames == len(ref)
    assert m.psnr_mean > 20  # a fair resize of the same picture, not a mismatch


def test_bad_inputs_are_refused_with_what_was_given(rng):
    ref = _video(rng)
    with pytest.raises(ValueError, match=r"generated must be a uint8 array \[T, H, W, 3\], got float64"):
        compare_videos(ref.astype(np.float64), ref)
    with pytest.raises(ValueError, match="generated has 4 frames but reference has 5"):
        compare_videos(ref[:4], ref)
    with pytest.raises(ValueError, match=r"reference must be .* got uint8 \[5, 24, 32\]"):
        compare_videos(ref, ref[..., 0])


def test_flicker_sees_brightness_pumping_not_steady_ramps_or_motion(rng):
    t = 9
    flat = np.full((t, 32, 32, 3), 100, np.uint8)
    pumping = flat.copy()
    pumping[1::2] += 20  # alternates between grey 100 and 120
    ramp = (np.arange(t)[:, None, None, None] * 10 + np.zeros((1, 32, 32, 3))).astype(np.uint8)
    moving = np.zeros((t, 32, 32, 3), np.uint8)
    for i in range(t):  # a bright square walking across a dark frame: motion, constant mean level
        moving[i, 8:16, 2 + 2 * i : 10 + 2 * i] = 200
    assert flicker(flat) == 0.0
    assert flicker(pumping) == pytest.approx(20.0)
    assert flicker(ramp) == pytest.approx(0.0, abs=1e-9)
    assert flicker(moving) == pytest.approx(0.0, abs=1e-9)
    assert flicker(flat[:2]) == 0.0
    m = compare_videos(pumping, flat)
    assert m.flicker == pytest.approx(20.0) and m.flicker_reference == 0.0


def test_to_dict_round_trips(rng):
    ref = _video(rng)
    m = compare_videos(_noisy(rng, ref, 10), ref)
    d = m.to_dict()
    assert d["psnr_mean"] == m.psnr_mean and len(d["ssim"]) == 5
    again = type(m).from_dict(d)
    np.testing.assert_array_equal(again.psnr, m.psnr)
    assert again.ssim_mean == m.ssim_mean and again.flicker == m.flicker


def test_acceleration_gate_passes_close_runs_and_names_what_failed(rng):
    ref = _video(rng, t=5, h=32, w=32)
    smooth = np.repeat(np.repeat(ref[:, ::8, ::8], 8, axis=1), 8, axis=2)  # blocky: SSIM-friendly content
    close = _noisy(rng, smooth, sigma=1.0)
    gate = acceleration_gate(close, smooth)
    assert gate.passed and gate.reasons == ()
    assert gate.metrics.psnr_mean > 40

    far = _noisy(rng, smooth, sigma=40.0)
    gate = acceleration_gate(far, smooth)
    assert not gate.passed
    assert len(gate.reasons) == 2
    assert gate.reasons[0].startswith("mean PSNR") and "< 32 dB" in gate.reasons[0]
    assert gate.reasons[1].startswith("mean SSIM") and "< 0.85" in gate.reasons[1]

    assert acceleration_gate(far, smooth, min_psnr=5, min_ssim=0.0).passed
    steady = np.repeat(smooth[:1], 5, axis=0)  # a still video: flicker 0
    pumping = steady.copy()
    pumping[1::2] = np.clip(pumping[1::2].astype(int) + 6, 0, 255).astype(np.uint8)
    gate = acceleration_gate(pumping, steady, min_psnr=20, min_ssim=0.5, max_flicker_increase=1.0)
    assert not gate.passed and len(gate.reasons) == 1 and gate.reasons[0].startswith("flicker")
    assert acceleration_gate(pumping, steady, min_psnr=20, min_ssim=0.5).passed  # flicker is checked only when asked
    assert gate.to_dict()["passed"] is False

"""Ground truth of synthetic anime clips (wanray.datasets.truth) and the identity metric on it, on fresh entries."""

from pathlib import Path

import numpy as np
import pytest

from wanray.datasets.character import CLOTH_COLOURS
from wanray.datasets.render import render_anime_frames
from wanray.datasets.synth import SynthConfig, plan_entry
from wanray.datasets.truth import REGIONS, clip_truth, detect_ends, end_errors, readable_ends
from wanray.metrics import region_delta_e
from wanray.video import frames_to_array

FRAMES = 9  # at 128x128: the size the detector and the targets are made for


@pytest.fixture(params=range(2))
def entry(request):
    """A fresh random entry (its seed starts every failure message), its reference clip and its truth."""
    seed = int(np.random.default_rng().integers(1, 100_000))
    plan = plan_entry(SynthConfig(n=1, out=Path("unused"), seed=seed, frames=FRAMES), 0)
    reference = frames_to_array(render_anime_frames(plan.character, plan.dance, plan.placement, plan.layout, FRAMES, 15))
    truth = clip_truth(plan.character, plan.dance, plan.placement, plan.layout, FRAMES, 15)
    return f"seed {seed}: {plan.dance}, {plan.character}", plan, reference, truth


def test_regions_are_where_their_colours_are_drawn(entry):
    what, plan, reference, truth = entry
    assert truth.background.shape == reference.shape and truth.ends.shape == (FRAMES, 4, 2), what
    masks = np.stack([truth.masks[r] for r in REGIONS])  # [3, T, H, W]
    assert masks.shape == (3, *reference.shape[:3]) and masks.dtype == bool, what
    assert masks.sum(0).max() <= 1, f"{what}: regions overlap"
    for region in REGIONS:
        assert (truth.masks[region].sum(axis=(1, 2)) >= 4).all(), f"{what}: {region} empty in a frame"
    # inside its mask, a garment shows its flat colour or its one shadow tone (outlines are excluded)
    for region in ("top", "bottom"):
        tones = truth.palette[region].astype(int)
        pixels = reference[truth.masks[region]].astype(int)  # [N, 3]
        nearest = np.abs(pixels[:, None, :] - tones[None]).max(-1).min(-1)
        assert np.mean(nearest <= 2) > 0.97, f"{what}: {region} mask holds other colours"
    hair = reference[truth.masks["hair"]].astype(int)  # flat, shadow, or the highlight band's tone
    nearest = np.abs(hair[:, None, :] - truth.palette["hair"].astype(int)[None]).max(-1).min(-1)
    assert np.mean(nearest <= 2) > 0.97, f"{what}: hair mask holds other colours"


def test_ends_are_in_the_frame(entry):
    what, plan, reference, truth = entry
    h, w = reference.shape[1:3]
    seen = truth.ends[truth.visible]
    assert truth.visible.mean() > 0.4, what
    assert ((seen >= 0) & (seen <= [w, h])).all() and np.isfinite(truth.roots).all(), what


def test_the_detector_finds_hands_and_feet_on_references_and_nothing_on_an_empty_scene():
    seeds = np.random.default_rng().integers(1, 100_000, size=4)
    errors, readable, visible = [], 0, 0
    for seed in seeds:
        plan = plan_entry(SynthConfig(n=1, out=Path("unused"), seed=int(seed), frames=FRAMES), 0)
        reference = frames_to_array(render_anime_frames(plan.character, plan.dance, plan.placement, plan.layout,
                                                        FRAMES, 15))
        truth = clip_truth(plan.character, plan.dance, plan.placement, plan.layout, FRAMES, 15)
        e = end_errors(detect_ends(reference, truth), truth)
        assert np.isnan(e[~truth.visible]).all()
        errors.append(e[truth.visible])
        readable += int(readable_ends(reference, truth).sum())
        visible += int(truth.visible.sum())
        # no dancer, nothing found: every visible end is a miss, scored as the search radius
        assert np.isnan(detect_ends(truth.background, truth)).all(), f"seed {seed}"
        assert np.nanmin(end_errors(detect_ends(truth.background, truth), truth)) == pytest.approx(16.0)
    errors = np.concatenate(errors)
    # 96% of ends within 3 px over 300 entries; the worst entry (a dark hand under a sleeve) 50%
    assert readable == np.sum(errors <= 3) and readable / visible > 0.6, f"seeds {seeds}: {readable}/{visible}"
    assert np.median(errors) < 1.0, f"seeds {seeds}"


def test_delta_e_is_zero_for_the_same_clip_and_large_for_a_recoloured_top(entry):
    what, plan, reference, truth = entry
    same = region_delta_e(reference, reference, truth.masks)
    assert all(np.allclose(same[r], 0) for r in REGIONS), what
    other = next(c for c in ("green", "purple", "orange") if c not in (plan.character.top_colour,
                                                                      plan.character.bottom_colour))
    recoloured = reference.copy()
    recoloured[truth.masks["top"]] = CLOTH_COLOURS[other]
    delta = region_delta_e(recoloured, reference, truth.masks)
    assert (delta["top"] > 10).all() and np.allclose(delta["hair"], 0) and np.allclose(delta["bottom"], 0), what


def test_delta_e_skips_regions_too_small_to_measure():
    rng = np.random.default_rng()
    frames = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    mask = np.zeros((3, 16, 16), dtype=bool)
    mask[0, :4, :4] = True
    mask[1, 0, :3] = True  # 3 pixels: below the default 4
    delta = region_delta_e(frames, frames[::-1].copy(), {"r": mask})["r"]
    assert np.isfinite(delta[0]) and np.isnan(delta[1:]).all()
    with pytest.raises(ValueError, match="mask 'r'"):
        region_delta_e(frames, frames, {"r": mask[:2]})

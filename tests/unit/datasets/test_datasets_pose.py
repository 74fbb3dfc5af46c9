import math

import numpy as np
import pytest

from wanray.datasets.pose import (
    ANKLE_Y,
    COLORS,
    DANCE_NAMES,
    DANCES,
    HELD_OUT_DANCES,
    LIMBS,
    J,
    Placement,
    draw_openpose,
    keypoints_px,
    render_pose_video,
    skeleton_at,
)


def test_keypoints_and_limbs_use_the_openpose_colours_on_black():
    size = 512  # OpenPose's own scale: stick width 4, dot radius 4
    placement = Placement(height=size, width=size)
    points = keypoints_px(skeleton_at("spin", 0.0), placement)  # arms out: limbs well apart
    frame = np.asarray(draw_openpose(points, size, size)).astype(int)
    for i, (x, y) in enumerate(points):
        assert np.abs(frame[int(y), int(x)] - COLORS[i]).max() <= 2, f"keypoint {i}"
    for i in (2, 3, 4, 5, 7, 8, 10, 11):  # arm and leg limbs: drawn at 60% of their colour
        a, b = LIMBS[i]
        mx, my = (points[a] + points[b]) / 2
        assert np.abs(frame[int(my), int(mx)] - np.array(COLORS[i]) * 0.6).max() <= 3, f"limb {i}"
    assert not frame[:20, :20].any() and not frame[-20:, -20:].any()


@pytest.mark.parametrize("dance", list(DANCES))
def test_every_dance_is_periodic_and_moves(dance):
    period = DANCES[dance].period_s
    t = np.random.default_rng().uniform(0, 10)
    a, b = skeleton_at(dance, t), skeleton_at(dance, t + period)
    assert np.allclose(a.joints, b.joints, atol=1e-9)
    quarter = skeleton_at(dance, t + period / 4).joints
    half = skeleton_at(dance, t + period / 2).joints
    assert max(np.abs(quarter - a.joints).max(), np.abs(half - a.joints).max()) > 0.03


@pytest.mark.parametrize("dance", [d for d in DANCES if d != "jump"])
def test_feet_stay_on_the_floor_unless_jumping(dance):
    for t in np.linspace(0, 3, 13):
        ankles = skeleton_at(dance, t).joints[[J["r_ankle"], J["l_ankle"]], 1]
        assert math.isclose(ankles.min(), ANKLE_Y, abs_tol=1e-9)


def test_jump_leaves_the_floor_and_spin_turns_its_back():
    lifts = [
        skeleton_at("jump", t).joints[[J["r_ankle"], J["l_ankle"]], 1].min() - ANKLE_Y for t in np.linspace(0, 0.8, 17)
    ]
    assert max(lifts) > 0.08
    back = skeleton_at("spin", DANCES["spin"].period_s / 2)
    assert not back.visible[[J["nose"], J["r_eye"], J["l_eye"]]].any()
    points = keypoints_px(back, Placement(height=128, width=128))
    assert np.isnan(points[J["nose"]]).all() and not np.isnan(points[J["neck"]]).any()


def test_pose_video_has_the_asked_frames_and_differs_by_dance():
    waves = render_pose_video("wave", 64, 96, 9, 15)
    assert len(waves) == 9 and all(f.size == (96, 64) and f.mode == "RGB" for f in waves)
    again = render_pose_video("wave", 64, 96, 9, 15)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(waves, again))
    robot = render_pose_video("robot", 64, 96, 9, 15)
    assert not np.array_equal(np.asarray(waves[4]), np.asarray(robot[4]))
    with pytest.raises(ValueError, match="unknown dance 'tango'; choose from wave"):
        render_pose_video("tango", 64, 64, 9, 15)


def test_the_held_out_dance_is_in_no_default_set_but_can_be_asked_for():
    from pathlib import Path

    from wanray.datasets.synth import SynthConfig, plan_entry

    assert HELD_OUT_DANCES == ("kick",) and set(DANCE_NAMES) | set(HELD_OUT_DANCES) == set(DANCES)
    seed = int(np.random.default_rng().integers(0, 10_000))
    default = SynthConfig(n=200, out=Path("."), seed=seed)
    assert {plan_entry(default, i).dance for i in range(200)} == set(DANCE_NAMES)  # all seven, never the held-out one
    held = SynthConfig(n=4, out=Path("."), seed=seed, dances=HELD_OUT_DANCES)
    assert {plan_entry(held, i).dance for i in range(4)} == {"kick"}
    # its legs leave the floor by turns: a kick, not a jump (one foot stays down)
    ankles = np.array([skeleton_at("kick", t).joints[[J["r_ankle"], J["l_ankle"]], 1] for t in np.linspace(0, 1.6, 17)])
    assert np.allclose(ankles.min(axis=1), ANKLE_Y) and (ankles.max(axis=1) - ANKLE_Y).max() > 0.05

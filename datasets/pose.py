"""Procedural dances of a 2.5-D skeleton, and pose videos in the OpenPose colour convention.

A dance is a periodic function of time: ``skeleton_at(dance, t)`` gives 3-D joints in body units
(feet on y=0, about 1.0 tall, y up, z towards the camera); ``Placement`` maps them to pixels by an
orthographic projection. The same skeleton drives the pose video, the photo and the anime video of
the synthetic set, so all three agree frame by frame.

    frames = render_pose_video("wave", height=128, width=128, frames=81, fps=15)   # list of PIL images

Pose drawing follows OpenPose / DWPose as ControlNet and VACE use it: 18 COCO keypoints, 17 limbs
as filled ellipses in the standard colours at 60% brightness, then keypoints as full-colour dots,
on black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

# -- OpenPose (COCO-18) convention --

KEYPOINTS = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
# 0-based pairs; the first 17 of OpenPose's limbSeq (the two shoulder-ear links are not drawn).
LIMBS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)
COLORS = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
# Joints used for drawing the character, after the 18 keypoints.
HEAD, PELVIS = 18, 19
NUM_JOINTS = 20
J = {name: i for i, name in enumerate(KEYPOINTS)}

# -- body proportions (body units: ankle-to-crown about 1.0) --

NECK_Y, PELVIS_Y, ANKLE_Y = 0.80, 0.50, 0.04
SHOULDER_HALF, HIP_HALF = 0.11, 0.07
UPPER_ARM, FOREARM, THIGH, SHIN = 0.165, 0.15, 0.23, 0.23
HEAD_ABOVE_NECK = 0.10


@dataclass(kw_only=True, frozen=True)
class PoseParams:
    """One pose. Limb angles (radians): ``a`` swings the limb outward in the frontal plane (0 = hanging
    down, pi/2 = horizontal, pi = straight up, negative = across the body), ``b`` swings it towards the
    camera. Each is the limb segment's absolute direction in the body frame."""

    dx: float = 0.0  # sideways shift, body units
    lift: float = 0.0  # height of the lowest foot above the floor (jumps)
    lean: float = 0.0  # torso roll about the pelvis, positive towards image right
    head_tilt: float = 0.0
    yaw_upper: float = 0.0  # turn of the torso, arms and head about the vertical axis
    yaw_lower: float = 0.0  # turn of hips and legs
    r_upper: tuple[float, float] = (0.12, 0.0)
    r_fore: tuple[float, float] = (0.10, 0.0)
    l_upper: tuple[float, float] = (0.12, 0.0)
    l_fore: tuple[float, float] = (0.10, 0.0)
    r_thigh: tuple[float, float] = (0.03, 0.0)
    r_shin: tuple[float, float] = (0.03, 0.0)
    l_thigh: tuple[float, float] = (0.03, 0.0)
    l_shin: tuple[float, float] = (0.03, 0.0)


REST = PoseParams()


def _smooth_square(x: float, sharpness: float = 3.0) -> float:
    """A square wave with soft edges, in [-1, 1] (robot moves: hold, snap, hold)."""
    return math.tanh(sharpness * x) / math.tanh(sharpness)


def _wave(p: float) -> PoseParams:
    s = math.sin(p)
    return replace(REST, r_upper=(2.3, 0.0), r_fore=(2.85 + 0.45 * s, 0.0), head_tilt=0.06 * s, dx=0.01 * s)


def _twist(p: float) -> PoseParams:
    s = math.sin(p)
    arms = dict(
        r_upper=(0.55, 0.25), l_upper=(0.55, 0.25), r_fore=(-1.1 + 0.25 * s, 0.35), l_fore=(-1.1 - 0.25 * s, 0.35)
    )
    knees = dict(r_thigh=(0.06, 0.4), l_thigh=(0.06, 0.4), r_shin=(0.02, -0.4), l_shin=(0.02, -0.4))
    return replace(REST, yaw_upper=0.55 * s, yaw_lower=-0.4 * s, **arms, **knees)


def _robot(p: float) -> PoseParams:
    q = _smooth_square(math.sin(p))
    half = math.pi / 2
    return replace(
        REST,
        r_upper=(half, 0.0),
        l_upper=(half, 0.0),
        r_fore=(half + half * q, 0.0),
        l_fore=(half - half * q, 0.0),
        head_tilt=0.12 * q,
        yaw_upper=0.2 * q,
    )


def _jump(p: float) -> PoseParams:
    s = math.sin(p)
    air, crouch = max(0.0, s), max(0.0, -s)
    arm = 0.3 + 2.4 * air
    return replace(
        REST,
        lift=0.10 * air,
        r_upper=(arm, 0.0),
        l_upper=(arm, 0.0),
        r_fore=(arm + 0.2, 0.0),
        l_fore=(arm + 0.2, 0.0),
        r_thigh=(0.05 + 0.15 * air, 0.55 * crouch),
        l_thigh=(0.05 + 0.15 * air, 0.55 * crouch),
        r_shin=(0.05 + 0.1 * air, -0.55 * crouch),
        l_shin=(0.05 + 0.1 * air, -0.55 * crouch),
    )


def _sway(p: float) -> PoseParams:
    s = math.sin(p)
    return replace(
        REST,
        lean=0.2 * s,
        dx=0.05 * s,
        r_upper=(2.55, 0.0),
        l_upper=(2.55, 0.0),
        r_fore=(2.95, 0.0),
        l_fore=(2.95, 0.0),
        head_tilt=0.1 * s,
    )


def _march(p: float) -> PoseParams:
    s = math.sin(p)
    return replace(
        REST,
        lift=0.0,
        l_thigh=(0.03, 1.1 * max(0.0, s)),
        l_shin=(0.03, -0.15 * max(0.0, s)),
        r_thigh=(0.03, 1.1 * max(0.0, -s)),
        r_shin=(0.03, -0.15 * max(0.0, -s)),
        r_upper=(0.15, 0.6 * s),
        r_fore=(0.12, 0.6 * s + 0.35),
        l_upper=(0.15, -0.6 * s),
        l_fore=(0.12, -0.6 * s + 0.35),
    )


def _spin(p: float) -> PoseParams:
    return replace(
        REST,
        yaw_upper=p,
        yaw_lower=p,
        r_upper=(1.25, 0.0),
        l_upper=(1.25, 0.0),
        r_fore=(1.5, 0.0),
        l_fore=(1.5, 0.0),
    )


def _kick(p: float) -> PoseParams:
    s = math.sin(p)
    right, left = max(0.0, s), max(0.0, -s)  # one straight leg kicks out to the side, then the other
    return replace(
        REST,
        lean=-0.12 * s,
        r_thigh=(0.05 + 0.9 * right, 0.0),
        r_shin=(0.05 + 0.9 * right, 0.0),
        l_thigh=(0.05 + 0.9 * left, 0.0),
        l_shin=(0.05 + 0.9 * left, 0.0),
        r_upper=(1.1 + 0.6 * left, 0.0),
        l_upper=(1.1 + 0.6 * right, 0.0),
        r_fore=(1.2 + 0.6 * left, 0.0),
        l_fore=(1.2 + 0.6 * right, 0.0),
    )


@dataclass(frozen=True)
class Dance:
    name: str
    period_s: float  # one cycle of the motion, in seconds
    pose: Callable[[float], PoseParams]  # phase in radians -> pose
    description: str


DANCES: dict[str, Dance] = {
    d.name: d
    for d in (
        Dance("wave", 1.2, _wave, "right arm raised, waving the forearm side to side"),
        Dance("twist", 0.9, _twist, "knees bent, shoulders and hips turning against each other"),
        Dance("robot", 2.0, _robot, "arms held at right angles, forearms snapping up and down in turn"),
        Dance("jump", 0.8, _jump, "crouch, then jump with both arms up"),
        Dance("sway", 2.4, _sway, "arms overhead, body leaning left and right"),
        Dance("march", 1.0, _march, "knees lifted in turn, arms swinging"),
        Dance("spin", 3.0, _spin, "arms out, turning a full circle"),
        Dance("kick", 1.6, _kick, "side kicks, one straight leg then the other, arms out for balance"),
    )
}
# The dances of a synthetic set unless told otherwise: every set the shipped embedded model trained on. Their order
# fixes which dance each (seed, index) draws, so it never changes.
DANCE_NAMES = ("wave", "twist", "robot", "jump", "sway", "march", "spin")
# Held out of every such set: a dance the shipped model never saw, for fine-tuning comparisons (scripts/compare-embedded.sh).
HELD_OUT_DANCES = tuple(d for d in DANCES if d not in DANCE_NAMES)


def get_dance(name: str) -> Dance:
    try:
        return DANCES[name]
    except KeyError:
        raise ValueError(f"unknown dance {name!r}; choose from {', '.join(DANCES)}") from None


# -- forward kinematics --


def _direction(angles: tuple[float, float], side: float) -> np.ndarray:
    a, b = angles
    return np.array([side * math.sin(a) * math.cos(b), -math.cos(a) * math.cos(b), math.sin(b)])


def _rot_y(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    # x' = x cos + z sin, z' = -x sin + z cos: positive theta turns the character's front towards image right
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    # positive theta leans the top towards +x (image right; y is up here)
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


@dataclass(frozen=True)
class Skeleton:
    """A posed body: joints [NUM_JOINTS, 3] in body units, which of the 18 keypoints face the camera, and
    the transforms that placed them (so a renderer can place more body-frame points the same way)."""

    joints: np.ndarray
    visible: np.ndarray  # [18] bool
    yaw_upper: float
    yaw_lower: float
    upper_rot: np.ndarray  # [3, 3] lean @ turn of the upper body, about the pelvis
    lower_rot: np.ndarray  # [3, 3] turn of the lower body, about the pelvis
    head_rot: np.ndarray  # [3, 3] head tilt, about the neck (body frame)
    offset: np.ndarray  # [3] grounding, jump and sideways shift, added last

    def upper(self, points) -> np.ndarray:
        """Body-frame points of the upper body (torso, arms) -> posed."""
        return (np.asarray(points, dtype=float) - _PELVIS0) @ self.upper_rot.T + _PELVIS0 + self.offset

    def lower(self, points) -> np.ndarray:
        """Body-frame points of the hips and legs -> posed."""
        return (np.asarray(points, dtype=float) - _PELVIS0) @ self.lower_rot.T + _PELVIS0 + self.offset

    def head(self, offsets) -> np.ndarray:
        """Points given relative to the head centre (x right, y up, z to the face's front) -> posed."""
        local = _HEAD0 + np.asarray(offsets, dtype=float)
        return self.upper(_NECK0 + local @ self.head_rot.T)


_PELVIS0 = np.array([0.0, PELVIS_Y, 0.0])
_NECK0 = np.array([0.0, NECK_Y, 0.0])
_HEAD0 = np.array([0.0, HEAD_ABOVE_NECK, 0.0])
FACE_POINTS = {
    "nose": (0.0, -0.02, 0.075),
    "r_eye": (-0.028, 0.005, 0.065),
    "l_eye": (0.028, 0.005, 0.065),
    "r_ear": (-0.07, 0.0, 0.0),
    "l_ear": (0.07, 0.0, 0.0),
}


def skeleton_from(params: PoseParams) -> Skeleton:
    """3-D joints of a pose: body-frame limbs, then turns, lean, grounding, shift."""
    body = np.zeros((NUM_JOINTS, 3))  # body frame, before any turn
    body[J["neck"]] = _NECK0
    for side, prefix, up, fo in ((-1.0, "r", params.r_upper, params.r_fore), (1.0, "l", params.l_upper, params.l_fore)):
        shoulder = _NECK0 + np.array([side * SHOULDER_HALF, -0.01, 0.0])
        elbow = shoulder + UPPER_ARM * _direction(up, side)
        body[J[f"{prefix}_shoulder"]], body[J[f"{prefix}_elbow"]] = shoulder, elbow
        body[J[f"{prefix}_wrist"]] = elbow + FOREARM * _direction(fo, side)
    for side, prefix, th, sh in ((-1.0, "r", params.r_thigh, params.r_shin), (1.0, "l", params.l_thigh, params.l_shin)):
        hip = _PELVIS0 + np.array([side * HIP_HALF, 0.0, 0.0])
        knee = hip + THIGH * _direction(th, side)
        body[J[f"{prefix}_hip"]], body[J[f"{prefix}_knee"]] = hip, knee
        body[J[f"{prefix}_ankle"]] = knee + SHIN * _direction(sh, side)
    head_rot = _rot_z(params.head_tilt)
    body[HEAD] = _NECK0 + head_rot @ _HEAD0
    for name, offset in FACE_POINTS.items():
        body[J[name]] = _NECK0 + head_rot @ (_HEAD0 + np.array(offset))
    body[PELVIS] = _PELVIS0
    upper_rot = _rot_z(params.lean) @ _rot_y(params.yaw_upper)
    lower_rot = _rot_y(params.yaw_lower)
    lower = [J["r_hip"], J["r_knee"], J["r_ankle"], J["l_hip"], J["l_knee"], J["l_ankle"], PELVIS]
    upper = [i for i in range(NUM_JOINTS) if i not in lower]
    joints = np.zeros_like(body)
    joints[upper] = (body[upper] - _PELVIS0) @ upper_rot.T + _PELVIS0
    joints[lower] = (body[lower] - _PELVIS0) @ lower_rot.T + _PELVIS0
    # feet on the floor (bent knees lower the hips), then the jump and the sideways shift
    lowest = min(joints[J["r_ankle"], 1], joints[J["l_ankle"], 1])
    offset = np.array([params.dx, ANKLE_Y + params.lift - lowest, 0.0])
    return Skeleton(
        joints=joints + offset,
        visible=_visible(params),
        yaw_upper=params.yaw_upper,
        yaw_lower=params.yaw_lower,
        upper_rot=upper_rot,
        lower_rot=lower_rot,
        head_rot=head_rot,
        offset=offset,
    )


def _visible(params: PoseParams) -> np.ndarray:
    """Face keypoints turned away from the camera are not drawn (as a detector would miss them)."""
    visible = np.ones(len(KEYPOINTS), dtype=bool)
    yaw = params.yaw_upper
    visible[J["nose"]] = math.cos(yaw) > 0.2
    # an eye's normal points 0.45 rad off the face's front, towards its own side
    visible[J["r_eye"]] = math.cos(yaw - 0.45) > 0.15
    visible[J["l_eye"]] = math.cos(yaw + 0.45) > 0.15
    # an ear's outward normal is (-1, 0, 0) for the right ear: z' = sin(yaw) after the turn
    visible[J["r_ear"]] = math.sin(yaw) > -0.6
    visible[J["l_ear"]] = -math.sin(yaw) > -0.6
    return visible


def skeleton_at(dance: str, t: float) -> Skeleton:
    """The skeleton of ``dance`` at ``t`` seconds (every dance is periodic; t=0 is its first frame)."""
    d = get_dance(dance)
    return skeleton_from(d.pose(2 * math.pi * t / d.period_s))


# -- placement in the frame --


@dataclass(kw_only=True, frozen=True)
class Placement:
    """Where the character stands: feet at 90% of the height, body (1.0 unit) 72% of it times ``scale``,
    centred at ``0.5 + x_offset`` of the width."""

    height: int
    width: int
    scale: float = 1.0
    x_offset: float = 0.0

    @property
    def pixels_per_unit(self) -> float:
        return 0.72 * self.height * self.scale

    def project(self, joints: np.ndarray) -> np.ndarray:
        """[N, 3] body units -> [N, 2] pixel (x, y), y down."""
        s = self.pixels_per_unit
        x = self.width * (0.5 + self.x_offset) + joints[:, 0] * s
        y = 0.90 * self.height - joints[:, 1] * s
        return np.stack([x, y], axis=1)


# -- OpenPose drawing --


def keypoints_px(skeleton: Skeleton, placement: Placement) -> np.ndarray:
    """[18, 2] pixel coordinates; NaN for keypoints not drawn."""
    points = placement.project(skeleton.joints[: len(KEYPOINTS)])
    points[~skeleton.visible] = np.nan
    return points


def draw_openpose(points: np.ndarray, height: int, width: int, supersample: int | None = None) -> Image.Image:
    """One pose frame (RGB, black background), drawn at ``supersample`` x size then box-filtered (anti-aliasing;
    default 4x below 128 px, 2x from 128 px, where limbs are already 3 px wide)."""
    k = supersample or (4 if min(height, width) < 128 else 2)
    unit = min(height, width) / 512  # OpenPose draws stickwidth 4, radius 4 at ~512 px
    stick = float(np.clip(4 * unit, 1.5, 4.0)) * k
    radius = float(np.clip(4 * unit, 2.0, 4.0)) * k
    canvas = Image.new("RGB", (width * k, height * k))
    draw = ImageDraw.Draw(canvas)
    p = points * k
    for i, (a, b) in enumerate(LIMBS):
        if np.isnan(p[a]).any() or np.isnan(p[b]).any():
            continue
        # OpenPose scales the limb layer by 0.6 after drawing; on black that is drawing in 0.6 x colour
        draw.polygon(_ellipse_polygon(p[a], p[b], stick), fill=tuple(int(c * 0.6) for c in COLORS[i]))
    for i, (x, y) in enumerate(p):
        if not np.isnan(x):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=COLORS[i])
    return canvas.resize((width, height), Image.Resampling.BOX) if k > 1 else canvas


def _ellipse_polygon(a: np.ndarray, b: np.ndarray, half_width: float, n: int = 24) -> list[tuple[float, float]]:
    """The ellipse OpenPose fills for a limb: centred between the joints, as long as the limb."""
    centre = (a + b) / 2
    half_length = max(float(np.linalg.norm(b - a)) / 2, half_width)
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ex, ey = half_length * np.cos(t), half_width * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return list(zip(centre[0] + ex * c - ey * s, centre[1] + ex * s + ey * c))


def frame_times(frames: int, fps: float) -> np.ndarray:
    return np.arange(frames) / fps


def render_pose_video(
    dance: str, height: int, width: int, frames: int, fps: float, *, scale: float = 1.0, x_offset: float = 0.0
) -> list[Image.Image]:
    """The OpenPose skeleton video of ``dance``: ``frames`` frames at ``fps`` (frame i shows t = i / fps)."""
    get_dance(dance)
    placement = Placement(height=height, width=width, scale=scale, x_offset=x_offset)
    return [
        draw_openpose(keypoints_px(skeleton_at(dance, t), placement), height, width) for t in frame_times(frames, fps)
    ]

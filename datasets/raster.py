"""Anti-aliased 2-D shapes as signed distance fields (numpy), for the synthetic renders.

Every shape gives, per pixel, a signed distance in pixels (negative inside) and a 2-D surface normal
(how far across the shape the pixel is, -1..1, as on a cylinder or a sphere), so one pass yields
coverage (``0.5 - sd``, analytic anti-aliasing), shading and outlines. Shapes are evaluated only
inside their bounding box. Hand-written because scikit-image and PIL draw aliased or flat shapes only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np


class Shape(Protocol):
    def bbox(self) -> tuple[float, float, float, float]: ...  # x0, y0, x1, y1 in pixels

    def sdf(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...  # sd, nx, ny


@dataclass
class Capsule:
    """A segment from ``a`` to ``b`` with radius ``r0`` at a, ``r1`` at b (a limb)."""

    a: np.ndarray
    b: np.ndarray
    r0: float
    r1: float | None = None

    def bbox(self):
        r = max(self.r0, self.r1 if self.r1 is not None else self.r0)
        return (
            min(self.a[0], self.b[0]) - r,
            min(self.a[1], self.b[1]) - r,
            max(self.a[0], self.b[0]) + r,
            max(self.a[1], self.b[1]) + r,
        )

    def sdf(self, px, py):
        # Python floats keep the float32 pixel grids in float32 (numpy scalars would upcast to float64)
        r0 = float(self.r0)
        r1 = r0 if self.r1 is None else float(self.r1)
        ax, ay = float(self.a[0]), float(self.a[1])
        abx, aby = float(self.b[0]) - ax, float(self.b[1]) - ay
        t = np.clip(((px - ax) * abx + (py - ay) * aby) / max(abx * abx + aby * aby, 1e-9), 0.0, 1.0)
        dx, dy = px - (ax + t * abx), py - (ay + t * aby)
        r = r0 + (r1 - r0) * t
        return np.hypot(dx, dy) - r, dx / r, dy / r


@dataclass
class Ellipse:
    c: np.ndarray
    rx: float
    ry: float
    angle: float = 0.0  # radians, rotates the x axis towards +y (image down)

    def bbox(self):
        r = max(self.rx, self.ry)
        return self.c[0] - r, self.c[1] - r, self.c[0] + r, self.c[1] + r

    def sdf(self, px, py):
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        rx, ry = float(self.rx), float(self.ry)
        x, y = px - float(self.c[0]), py - float(self.c[1])
        u, v = x * cos + y * sin, -x * sin + y * cos
        k0 = np.hypot(u / rx, v / ry)
        k1 = np.maximum(np.hypot(u / (rx * rx), v / (ry * ry)), 1e-9)
        sd = k0 * (k0 - 1.0) / k1  # Quilez's ellipse distance estimate: exact on the boundary's normal
        nu, nv = u / rx, v / ry
        return sd, nu * cos - nv * sin, nu * sin + nv * cos


@dataclass
class Polygon:
    """A convex polygon (any vertex order), expanded by ``round`` pixels. Its normal runs across
    ``axis`` = (a, b, half_width) when given (a torso is a cylinder about its spine), else it is flat."""

    points: np.ndarray  # [N, 2]
    round: float = 0.0
    axis: tuple[np.ndarray, np.ndarray, float] | None = None

    def bbox(self):
        (x0, y0), (x1, y1) = self.points.min(0), self.points.max(0)
        return x0 - self.round, y0 - self.round, x1 + self.round, y1 + self.round

    def sdf(self, px, py):
        pts = [(float(x), float(y)) for x, y in self.points]
        cx, cy = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
        sd = np.full(px.shape, -np.inf, dtype=px.dtype)
        for p, q in zip(pts, pts[1:] + pts[:1]):
            ex, ey = q[0] - p[0], q[1] - p[1]
            length = math.hypot(ex, ey)
            if length < 1e-9:
                continue
            nx, ny = ey / length, -ex / length
            if (cx - p[0]) * nx + (cy - p[1]) * ny > 0:  # make the normal point outwards
                nx, ny = -nx, -ny
            sd = np.maximum(sd, (px - p[0]) * nx + (py - p[1]) * ny)
        sd = sd - float(self.round)
        if self.axis is None:
            zero = np.zeros_like(px)
            return sd, zero, zero
        a, b, half = self.axis
        ax, ay, half = float(a[0]), float(a[1]), float(half)
        abx, aby = float(b[0]) - ax, float(b[1]) - ay
        t = np.clip(((px - ax) * abx + (py - ay) * aby) / max(abx * abx + aby * aby, 1e-9), 0.0, 1.0)
        return sd, (px - ax - t * abx) / half, (py - ay - t * aby) / half * 0.3


@dataclass
class HalfPlane:
    """Everything on one side of a line through ``point``; ``normal`` points outside. Used to cut shapes."""

    point: np.ndarray
    normal: np.ndarray

    def bbox(self):
        return -np.inf, -np.inf, np.inf, np.inf

    def sdf(self, px, py):
        length = math.hypot(float(self.normal[0]), float(self.normal[1]))
        nx, ny = float(self.normal[0]) / length, float(self.normal[1]) / length
        zero = np.zeros_like(px)
        return (px - float(self.point[0])) * nx + (py - float(self.point[1])) * ny, zero, zero


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the convex hull of [N, 2] points (the outline of a turned box)."""
    pts = sorted(map(tuple, np.asarray(points, dtype=float)))
    if len(pts) <= 2:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


# Shader: (part, sd, nx, ny, px, py) -> colour [h, w, 3] in 0..1
Shader = Callable[["Part", np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Part:
    """One region of one colour and material: the union of ``shapes``, cut by ``clip`` if given."""

    name: str
    shapes: list
    color: np.ndarray  # [3] in 0..1
    material: str  # skin | cloth | hair | shoe | eye | iris | pupil | mouth | shadow | ...
    depth: float  # painted back to front
    clip: object | None = None
    outline: bool = True
    extra: dict = field(default_factory=dict)


class Painter:
    """Paints parts onto an [H, W, 3] float canvas, each only within its bounding box."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.ys, self.xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5

    def window(self, shapes, margin: float = 2.0) -> tuple[slice, slice] | None:
        boxes = np.array([s.bbox() for s in shapes], dtype=float)
        x0 = max(int(np.floor(boxes[:, 0].min() - margin)), 0)
        y0 = max(int(np.floor(boxes[:, 1].min() - margin)), 0)
        x1 = min(int(np.ceil(boxes[:, 2].max() + margin)), self.width)
        y1 = min(int(np.ceil(boxes[:, 3].max() + margin)), self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return slice(y0, y1), slice(x0, x1)

    def fields(self, part: Part):
        """(window, sd, nx, ny, px, py) of a part, or None when it is outside the frame."""
        window = self.window(part.shapes)
        if window is None:
            return None
        px, py = self.xs[window], self.ys[window]
        sd = nx = ny = None
        for shape in part.shapes:
            s, x, y = shape.sdf(px, py)
            if sd is None:
                sd, nx, ny = s, x, y
            else:
                closer = s < sd
                sd, nx, ny = np.where(closer, s, sd), np.where(closer, x, nx), np.where(closer, y, ny)
        if part.clip is not None:
            sd = np.maximum(sd, part.clip.sdf(px, py)[0])
        return window, sd, nx, ny, px, py

    def paint(self, canvas: np.ndarray, part: Part, shader: Shader, softness: float = 0.5) -> None:
        f = self.fields(part)
        if f is None:
            return
        window, sd, nx, ny, px, py = f
        alpha = np.clip(softness - sd, 0.0, 1.0)[..., None]  # coverage of the pixel
        if not alpha.any():
            return
        color = shader(part, sd, nx, ny, px, py)
        canvas[window] = canvas[window] * (1 - alpha) + color * alpha

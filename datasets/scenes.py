"""Backgrounds of the synthetic set: four scenes, each a simple layout of flat shapes.

The same layout is painted twice: textured and lit for the photo, flat with outlines for the anime
video, so the model learns a per-region restyling rather than a new picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wanray.datasets.raster import Ellipse, Part, Polygon

SCENES = ("studio", "park", "beach", "city")

PALETTES = {
    "studio": {
        "walls": ((176, 190, 206), (216, 204, 184), (178, 196, 170), (196, 186, 214)),
        "floor": (142, 112, 86),
        "picture": (236, 226, 200),
        "frame": (92, 64, 44),
    },
    "park": {
        "sky": (126, 190, 238),
        "sky_low": (186, 222, 244),
        "grass": (98, 170, 78),
        "trunk": (112, 80, 54),
        "crown": (62, 140, 72),
        "cloud": (250, 250, 250),
    },
    "beach": {
        "sky": (110, 184, 240),
        "sky_low": (176, 218, 246),
        "sea": (36, 126, 188),
        "foam": (235, 245, 250),
        "sand": (232, 212, 164),
        "sun": (255, 236, 150),
        "cloud": (250, 250, 250),
    },
    "city": {
        "sky": (36, 36, 80),
        "sky_low": (96, 64, 120),
        "buildings": ((58, 60, 92), (72, 70, 104), (50, 56, 80)),
        "window": (250, 222, 120),
        "window_off": (40, 44, 66),
        "street": (72, 72, 80),
    },
}
HORIZON = {"studio": 0.78, "park": 0.60, "beach": 0.64, "city": 0.80}  # where the floor / ground begins
SEA_TOP = 0.50


@dataclass(kw_only=True, frozen=True)
class SceneLayout:
    """A scene's objects, in fractions of the frame: (kind, x, y, w, h, variant)."""

    name: str
    variant: int  # palette variant (the studio's wall colour)
    objects: tuple[tuple[str, float, float, float, float, int], ...]


def sample_layout(name: str, rng: np.random.Generator) -> SceneLayout:
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; choose from {', '.join(SCENES)}")
    objects: list[tuple[str, float, float, float, float, int]] = []
    variant = 0
    if name == "studio":
        variant = int(rng.integers(len(PALETTES["studio"]["walls"])))
        if rng.random() < 0.6:
            objects.append(("picture", float(rng.choice([0.18, 0.82])), 0.30, 0.18, 0.14, 0))
    elif name == "park":
        for x in (rng.uniform(0.04, 0.28), rng.uniform(0.72, 0.96)):
            objects.append(
                ("tree", float(x), HORIZON["park"], float(rng.uniform(0.12, 0.17)), float(rng.uniform(0.28, 0.38)), 0)
            )
        for _ in range(int(rng.integers(1, 3))):
            objects.append(
                (
                    "cloud",
                    float(rng.uniform(0.1, 0.9)),
                    float(rng.uniform(0.08, 0.24)),
                    float(rng.uniform(0.16, 0.26)),
                    0.07,
                    0,
                )
            )
    elif name == "beach":
        objects.append(("sun", float(rng.choice([0.2, 0.8]) + rng.uniform(-0.08, 0.08)), 0.16, 0.07, 0.07, 0))
        if rng.random() < 0.5:
            objects.append(("cloud", float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.3)), 0.22, 0.06, 0))
    else:
        x = -0.02
        while x < 1.0:
            w = float(rng.uniform(0.12, 0.22))
            top = float(rng.uniform(0.28, 0.55))
            objects.append(("building", x, top, w, HORIZON["city"] - top, int(rng.integers(3))))
            x += w + float(rng.uniform(0.0, 0.03))
        variant = int(rng.integers(1 << 30))  # seeds which windows are lit
    return SceneLayout(name=name, variant=variant, objects=tuple(objects))


def _rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float32) / 255.0


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return Polygon(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float))


def scene_parts(layout: SceneLayout, height: int, width: int) -> list[Part]:
    """The layout as parts in pixels, back to front. Big regions extend past the frame (no outline at its edge)."""
    H, W = height, width
    pal = PALETTES[layout.name]
    pad = 0.1 * max(H, W)
    horizon = HORIZON[layout.name] * H
    parts: list[Part] = []

    def add(name, shape, color, material, outline=True):
        parts.append(
            Part(
                name,
                [shape] if not isinstance(shape, list) else shape,
                _rgb(color),
                material,
                depth=len(parts),
                outline=outline,
            )
        )

    if layout.name == "studio":
        add("wall", _rect(-pad, -pad, W + pad, horizon), pal["walls"][layout.variant], "wall")
        add("floor", _rect(-pad, horizon, W + pad, H + pad), pal["floor"], "floor")
    else:
        add("sky", _rect(-pad, -pad, W + pad, horizon), pal["sky"], "sky", outline=False)
        low_top = (SEA_TOP if layout.name == "beach" else HORIZON[layout.name]) * H - 0.14 * H
        add("sky_low", _rect(-pad, low_top, W + pad, horizon), pal["sky_low"], "sky_low", outline=False)
    for kind, x, y, w, h, variant in layout.objects:
        cx, cy, sw, sh = x * W, y * H, w * W, h * H
        if kind == "picture":
            add("frame", _rect(cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2), pal["frame"], "wood")
            m = 0.18 * sh
            add(
                "picture",
                _rect(cx - sw / 2 + m, cy - sh / 2 + m, cx + sw / 2 - m, cy + sh / 2 - m),
                pal["picture"],
                "paper",
            )
        elif kind == "cloud":
            add(
                "cloud",
                [
                    Ellipse(np.array([cx + dx * sw, cy + dy * sh]), r * sw, r * sw * 0.6)
                    for dx, dy, r in ((-0.25, 0.1, 0.3), (0.05, -0.15, 0.35), (0.3, 0.1, 0.28))
                ],
                pal["cloud"],
                "cloud",
            )
        elif kind == "sun":
            add("sun", Ellipse(np.array([cx, cy]), sw, sw), pal["sun"], "sun")
        elif kind == "building":
            add("building", _rect(cx, cy, cx + sw, horizon + 1), pal["buildings"][variant], "building")
    if layout.name == "beach":
        add("sea", _rect(-pad, SEA_TOP * H, W + pad, horizon), pal["sea"], "sea")
        add("sand", _rect(-pad, horizon, W + pad, H + pad), pal["sand"], "sand")
    elif layout.name == "park":
        add("grass", _rect(-pad, horizon, W + pad, H + pad), pal["grass"], "grass")
        for kind, x, y, w, h, _ in layout.objects:
            if kind == "tree":
                cx, base, crown, tall = x * W, y * H + 0.03 * H, w * W, h * H
                add("trunk", _rect(cx - 0.12 * crown, base - tall, cx + 0.12 * crown, base), pal["trunk"], "bark")
                add("crown", Ellipse(np.array([cx, base - tall]), crown, crown * 0.9), pal["crown"], "leaves")
    elif layout.name == "city":
        add("street", _rect(-pad, horizon, W + pad, H + pad), pal["street"], "street")
        rng = np.random.default_rng(layout.variant)
        for kind, x, y, w, h, _ in layout.objects:
            if kind != "building":
                continue
            cols, rows = max(1, int(w / 0.05)), max(1, int(h / 0.08))
            for r in range(rows):
                for c in range(cols):
                    lit = rng.random() < 0.55
                    x0 = (x + (c + 0.3) * w / cols) * W
                    y0 = (y + (r + 0.3) * h / rows) * H
                    add(
                        "window",
                        _rect(x0, y0, x0 + 0.4 * w / cols * W, y0 + 0.4 * h / rows * H),
                        pal["window"] if lit else pal["window_off"],
                        "window" if lit else "window_off",
                        outline=False,
                    )
    return parts

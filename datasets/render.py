"""Paint a character in a pose: as a photo (lit, textured, noisy) or as an anime frame (cel shaded, outlined).

Both styles paint the same parts from the same skeleton and placement, so the anime video's frame 0
shows exactly the photo's pose and placement; only the style differs.

    photo = render_photo(character, skeleton_at("wave", 0.0), placement, layout, seed=7)
    frames = render_anime_frames(character, "wave", placement, layout, frames=81, fps=15)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from wanray.datasets.character import CLOTH_COLOURS, HAIR_COLOURS, SHOE_COLOURS, SKIN, Character
from wanray.datasets.pose import ANKLE_Y, NECK_Y, PELVIS_Y, J, Placement, Skeleton, frame_times, skeleton_at
from wanray.datasets.raster import Capsule, Ellipse, HalfPlane, Painter, Part, Polygon, convex_hull
from wanray.datasets.scenes import SceneLayout, scene_parts

ANIME_LIGHT = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])
LINE = np.array([0.13, 0.10, 0.14], dtype=np.float32)
FLAT = {"eye", "iris", "pupil", "glint", "mouth", "lash", "window", "window_off", "sun", "sky", "sky_low", "paper"}
ANIME_HEAD = 1.12  # anime heads are drawn a little larger (same skeleton, same placement)
ANIME_SHADOW = np.array([0.72, 0.7, 0.8], dtype=np.float32)  # the one hard shadow tone: base colour times this


def _rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float32) / 255.0


# -- the character as parts --


def character_parts(sk: Skeleton, ch: Character, pl: Placement, anime: bool) -> list[Part]:
    """Every painted region of the character, with a depth for back-to-front order."""
    u = pl.pixels_per_unit
    pts = pl.project(sk.joints)
    z = sk.joints[:, 2]
    skin, hair = _rgb(SKIN[ch.skin]), _rgb(HAIR_COLOURS[ch.hair_colour])
    top, bottom, shoe = (
        _rgb(CLOTH_COLOURS[ch.top_colour]),
        _rgb(CLOTH_COLOURS[ch.bottom_colour]),
        _rgb(SHOE_COLOURS[ch.shoes]),
    )
    parts: list[Part] = []

    def p2(points3) -> np.ndarray:
        return pl.project(np.atleast_2d(points3))

    # legs, shoes, hips
    trousers = ch.top != "dress" and ch.bottom == "trousers"
    for prefix in ("r", "l"):
        hip, knee, ankle = (pts[J[f"{prefix}_{n}"]] for n in ("hip", "knee", "ankle"))
        # legs stay behind hips, skirt and torso (a lifted knee shows below them); nearer leg in front
        depth = -0.1 + 0.01 * float(z[[J[f"{prefix}_hip"], J[f"{prefix}_knee"], J[f"{prefix}_ankle"]]].mean())
        legs = [Capsule(hip, knee, 0.045 * u, 0.036 * u), Capsule(knee, ankle, 0.034 * u, 0.027 * u)]
        parts.append(Part(f"{prefix}_leg", legs, bottom if trousers else skin, "cloth" if trousers else "skin", depth))
        if ch.top != "dress" and ch.bottom == "shorts":
            parts.append(
                Part(
                    f"{prefix}_shorts",
                    [Capsule(hip, hip + 0.55 * (knee - hip), 0.05 * u, 0.045 * u)],
                    bottom,
                    "cloth",
                    depth + 0.001,
                )
            )
        parts.append(
            Part(
                f"{prefix}_shoe",
                [Ellipse(ankle + np.array([0, 0.012 * u]), 0.042 * u, 0.026 * u)],
                shoe,
                "shoe",
                depth + 0.002,
            )
        )
    if ch.top != "dress" and ch.bottom in ("trousers", "shorts"):
        ring = [(sx * 0.07, PELVIS_Y + 0.04, sz * 0.045) for sx in (-1, 1) for sz in (-1, 1)]
        ring += [(sx * 0.07, PELVIS_Y - 0.055, sz * 0.04) for sx in (-1, 1) for sz in (-1, 1)]
        parts.append(Part("hips", [Polygon(convex_hull(p2(sk.lower(ring))), round=0.015 * u)], bottom, "cloth", -0.02))
    if ch.top == "dress" or ch.bottom == "skirt":
        hem_y = PELVIS_Y - (0.26 if ch.top == "dress" else 0.2)
        ring = [(sx * 0.08, PELVIS_Y + 0.03, sz * 0.05) for sx in (-1, 1) for sz in (-1, 1)]
        ring += [(sx * 0.15, hem_y, sz * 0.1) for sx in (-1, 1) for sz in (-1, 1)]
        color = top if ch.top == "dress" else bottom
        parts.append(Part("skirt", [Polygon(convex_hull(p2(sk.lower(ring))), round=0.008 * u)], color, "cloth", -0.015))

    # torso: a turned box from shoulders to waist (the waist turns with the hips)
    neck, pelvis = pts[J["neck"]], pts[19]
    shoulders = [(sx * 0.115, NECK_Y - 0.015, sz * 0.05) for sx in (-1, 1) for sz in (-1, 1)]
    chest = [(sx * 0.1, NECK_Y - 0.12, sz * 0.06) for sx in (-1, 1) for sz in (-1, 1)]
    waist = [(sx * 0.082, PELVIS_Y + 0.05, sz * 0.05) for sx in (-1, 1) for sz in (-1, 1)]
    hull = convex_hull(np.concatenate([p2(sk.upper(shoulders + chest)), p2(sk.lower(waist))]))
    parts.append(Part("torso", [Polygon(hull, round=0.015 * u, axis=(neck, pelvis, 0.11 * u))], top, "cloth", 0.0))
    head_c = p2(sk.head([0.0, 0.0, 0.0]))[0]
    parts.append(Part("neck", [Capsule(neck, head_c, 0.026 * u)], skin, "skin", -0.01))

    # arms
    for prefix in ("r", "l"):
        sh, el, wr = (pts[J[f"{prefix}_{n}"]] for n in ("shoulder", "elbow", "wrist"))
        depth = float(z[[J[f"{prefix}_shoulder"], J[f"{prefix}_elbow"], J[f"{prefix}_wrist"]]].mean()) + 0.03
        along = (wr - el) / max(np.linalg.norm(wr - el), 1e-6)
        hand = Ellipse(wr + along * 0.02 * u, 0.026 * u, 0.026 * u)
        upper, fore = Capsule(sh, el, 0.031 * u, 0.027 * u), Capsule(el, wr, 0.026 * u, 0.022 * u)
        if ch.long_sleeves:
            parts.append(Part(f"{prefix}_hand", [hand], skin, "skin", depth))
            parts.append(Part(f"{prefix}_arm", [upper, fore], top, "cloth", depth + 0.001))
        else:
            parts.append(Part(f"{prefix}_arm", [upper, fore, hand], skin, "skin", depth))
            parts.append(
                Part(
                    f"{prefix}_sleeve",
                    [Capsule(sh, sh + 0.5 * (el - sh), 0.037 * u, 0.034 * u)],
                    top,
                    "cloth",
                    depth + 0.001,
                )
            )

    parts += _head_parts(sk, ch, pl, anime, skin, hair)
    return sorted(parts, key=lambda p: p.depth)


def _head_parts(
    sk: Skeleton, ch: Character, pl: Placement, anime: bool, skin: np.ndarray, hair: np.ndarray
) -> list[Part]:
    u = pl.pixels_per_unit
    k = ANIME_HEAD if anime else 1.0

    def at(offset) -> np.ndarray:
        return pl.project(np.atleast_2d(sk.head(np.asarray(offset) * k)))[0]

    centre = at([0, 0, 0])
    up = at([0, 0.05, 0]) - centre
    up = up / max(np.linalg.norm(up), 1e-6)
    angle = math.atan2(up[0], -up[1])  # head roll on screen
    facing = math.cos(sk.yaw_upper)
    head_z = float(sk.head([0, 0, 0])[2])
    rx, ry = 0.068 * u * k, 0.08 * u * k
    parts = [Part("head", [Ellipse(centre, rx, ry, angle)], skin, "skin", head_z + 0.05)]

    # hair behind the head (it swings in front of the body when the back is turned)
    back_z = float(sk.head([0, 0, -0.07])[2])
    style = ch.hair_style
    back: list = []
    if style == "long":
        back = [Capsule(at([0, 0.0, -0.03]), at([0, -0.2, -0.05]), 0.088 * u * k, 0.075 * u * k)]
    elif style == "bob":
        back = [Ellipse(at([0, -0.012, -0.02]), rx * 1.24, ry * 1.02, angle)]
    elif style == "ponytail":
        back = [Capsule(at([0.05, 0.05, -0.05]), at([0.11, -0.13, -0.05]), 0.03 * u * k, 0.017 * u * k)]
    elif style == "twin tails":
        back = [
            Capsule(at([s * 0.065, 0.03, -0.02]), at([s * 0.12, -0.17, -0.03]), 0.032 * u * k, 0.02 * u * k)
            for s in (-1, 1)
        ]
    if back:
        clip = None
        if style == "bob":  # cut straight at the chin
            clip = HalfPlane(at([0, -0.075, 0]), up * -1)
        parts.append(Part("hair_back", back, hair, "hair", min(back_z, head_z + 0.04), clip=clip))

    # the face, when it looks towards the camera
    if facing > 0.15:
        squeeze = max(facing, 0.3)
        parts += _face_parts(at, u * k, squeeze, angle, ch, anime, skin, hair, head_z)

    # hair on top: a cap cut at the fringe; it covers the whole head as the back turns to the camera
    away = float(np.clip((0.25 - facing) / 1.0, 0.0, 1.0))
    tight = style in ("short", "spiky")
    cut = (0.03 if tight else 0.018) * (1 - away) - 0.11 * away
    cap = [Ellipse(at([0, 0.012, 0]), rx * (1.05 if tight else 1.1), ry * (1.03 if tight else 1.07), angle)]
    if style == "spiky":
        for x in (-0.05, -0.025, 0.0, 0.025, 0.05):
            y0 = 0.07 * math.sqrt(max(0.0, 1 - (x / 0.076) ** 2))
            tri = [at([x - 0.02, y0 - 0.01, 0]), at([x + 0.02, y0 - 0.01, 0]), at([x * 1.5, y0 + 0.045, 0])]
            cap.append(Polygon(np.array(tri)))
    parts.append(Part("hair", cap, hair, "hair", head_z + 0.08, clip=HalfPlane(at([0, cut, 0]), up * -1)))
    return parts


def _face_parts(at, u, squeeze, angle, ch, anime, skin, hair, head_z) -> list[Part]:
    parts = []
    z = head_z + 0.06
    for s in (-1, 1):
        if anime:
            c = at([s * 0.03, -0.004, 0.066])
            iris = (
                np.clip(hair * 0.6 + np.array([0.1, 0.08, 0.12]), 0, 1)
                if ch.hair_colour != "black"
                else _rgb((70, 50, 40))
            )
            parts += [
                Part("eye", [Ellipse(c, 0.016 * u * squeeze, 0.02 * u, angle)], _rgb((250, 250, 252)), "eye", z),
                Part(
                    "iris",
                    [Ellipse(c + np.array([0, 0.003 * u]), 0.011 * u * squeeze, 0.016 * u, angle)],
                    iris,
                    "iris",
                    z + 0.001,
                    outline=False,
                ),
                Part(
                    "pupil",
                    [Ellipse(c + np.array([0, 0.004 * u]), 0.005 * u * squeeze, 0.008 * u, angle)],
                    _rgb((20, 16, 24)),
                    "pupil",
                    z + 0.002,
                    outline=False,
                ),
                Part(
                    "glint",
                    [Ellipse(c + np.array([-0.004 * u, -0.005 * u]), 0.0045 * u, 0.0045 * u)],
                    _rgb((255, 255, 255)),
                    "glint",
                    z + 0.003,
                    outline=False,
                ),
                Part(
                    "lash",
                    [
                        Capsule(
                            c + np.array([-0.018 * u * squeeze, -0.016 * u]),
                            c + np.array([0.018 * u * squeeze, -0.021 * u]),
                            0.0045 * u,
                        )
                    ],
                    LINE,
                    "lash",
                    z + 0.004,
                    outline=False,
                ),
            ]
        else:
            c = at([s * 0.028, 0.004, 0.066])
            parts += [
                Part(
                    "eye",
                    [Ellipse(c, 0.012 * u * squeeze, 0.0065 * u, angle)],
                    _rgb((236, 232, 226)),
                    "eye",
                    z,
                    outline=False,
                ),
                Part(
                    "iris",
                    [Ellipse(c, 0.0062 * u * squeeze, 0.0062 * u, angle)],
                    _rgb((60, 42, 30)),
                    "iris",
                    z + 0.001,
                    outline=False,
                ),
                Part(
                    "brow",
                    [
                        Capsule(
                            c + np.array([-0.012 * u * squeeze, -0.018 * u]),
                            c + np.array([0.012 * u * squeeze, -0.02 * u]),
                            0.003 * u,
                        )
                    ],
                    hair * 0.7,
                    "hair",
                    z + 0.002,
                    outline=False,
                ),
            ]
    mouth = at([0, -0.045, 0.07])
    lips = _rgb((150, 60, 60)) if anime else np.clip(skin * 0.7 + _rgb((60, 10, 10)), 0, 1)
    parts.append(
        Part(
            "mouth",
            [Capsule(mouth - np.array([0.01 * u * squeeze, 0]), mouth + np.array([0.01 * u * squeeze, 0]), 0.003 * u)],
            lips,
            "mouth",
            z + 0.001,
            outline=False,
        )
    )
    return parts


# -- shading --


def _normal_z(nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))


def hair_highlight(base: np.ndarray) -> np.ndarray:
    """The lighter tone of the anime hair's highlight band (colours in 0..1)."""
    return np.clip(base * 1.2 + 0.12, 0, 1)


def anime_shader(line_width: float):
    """Flat colour, one hard shadow tone, a highlight band on hair, dark outlines."""

    def shade(part: Part, sd, nx, ny, px, py):
        base = part.color
        col = np.broadcast_to(base, sd.shape + (3,)).copy()
        if part.material not in FLAT and part.material not in (
            "wall",
            "floor",
            "grass",
            "sea",
            "sand",
            "street",
            "building",
        ):
            ndl = nx * ANIME_LIGHT[0] + ny * ANIME_LIGHT[1] + _normal_z(nx, ny) * ANIME_LIGHT[2]
            shadow = base * ANIME_SHADOW
            col = np.where((ndl < 0.12)[..., None], shadow, col)
            if part.material == "hair":
                ring = (ny > -0.72) & (ny < -0.42) & (np.abs(nx) < 0.55)
                col = np.where(ring[..., None], hair_highlight(base), col)
        if part.outline:
            t = np.clip(sd + line_width + 0.5, 0.0, 1.0)[..., None]
            col = col * (1 - t) + LINE * t
        return col

    return shade


class PhotoLook:
    """Per-photo randomness: light direction, textures (fabric, hair strands, grass...), colour cast."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        azimuth = rng.uniform(-0.8, 0.8)
        self.light = np.array([math.sin(azimuth) * 0.7, -0.6, 0.75])
        self.light /= np.linalg.norm(self.light)
        self.height, self.width = height, width
        self.fine = value_noise(rng, height, width, max(height, width) / 2)
        self.folds = value_noise(rng, height, width, 6)
        self.strands = value_noise(rng, height, width, (max(4, width // 3), max(2, height // 24)))
        self.blotch = value_noise(rng, height, width, 4)
        self.tint = 1.0 + rng.uniform(-0.04, 0.04, size=3).astype(np.float32)
        self.exposure = float(rng.uniform(0.92, 1.08))

    def texture(self, name: str, px, py) -> np.ndarray:
        field = getattr(self, name)
        return field[py.astype(np.int32), px.astype(np.int32)]

    def shader(self):
        L = self.light

        def shade(part: Part, sd, nx, ny, px, py):
            base, m = part.color, part.material
            if m in BACKGROUND_TEXTURE:
                return self._background(part, px, py)
            nz = _normal_z(nx, ny)
            diffuse = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0.0, 1.0)
            light = (0.36 + 0.72 * diffuse) * (0.8 + 0.2 * nz)
            col = base * light[..., None]
            if m == "skin":
                col = col + 0.05 * (1 - diffuse)[..., None] * np.array([0.9, 0.25, 0.15], dtype=np.float32)
                col = col + 0.07 * (diffuse**16)[..., None]
            elif m == "cloth":
                col = col * (1 + 0.07 * self.texture("fine", px, py) + 0.1 * self.texture("folds", px, py))[..., None]
            elif m == "hair":
                col = col * (1 + 0.28 * self.texture("strands", px, py))[..., None] + 0.12 * (diffuse**12)[..., None]
            elif m == "shoe":
                col = col + 0.18 * (diffuse**20)[..., None]
            return col

        return shade

    def _background(self, part: Part, px, py) -> np.ndarray:
        base, m = part.color, part.material
        amount, field = BACKGROUND_TEXTURE[m]
        col = base * (1 + amount * self.texture(field, px, py))[..., None]
        if m in ("sky", "sky_low"):
            col = col + (py / self.height * 0.25)[..., None]  # lighter towards the horizon
        if m in ("wall", "floor", "grass", "sand", "street", "sea"):
            col = col * (1.08 - 0.16 * (py / self.height))[..., None]
        return col

    def finish(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Camera: light falloff, colour cast, a little softness, sensor noise."""
        H, W = image.shape[:2]
        ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
        r2 = ((xs - W / 2) / W) ** 2 + ((ys - H / 2) / H) ** 2
        image = image * (1 - 0.5 * r2)[..., None] * self.tint * self.exposure
        image = soften(image, 0.3 * H / 128)
        noise = rng.normal(0, 0.01, size=(H, W, 1)) + rng.normal(0, 0.005, size=(H, W, 3))
        return np.clip(image + noise.astype(np.float32), 0, 1)


BACKGROUND_TEXTURE = {  # material -> (texture amount, texture field)
    "sky": (0.02, "blotch"),
    "sky_low": (0.02, "blotch"),
    "wall": (0.05, "blotch"),
    "floor": (0.12, "strands"),
    "grass": (0.18, "fine"),
    "leaves": (0.25, "fine"),
    "bark": (0.2, "strands"),
    "cloud": (0.05, "blotch"),
    "sea": (0.15, "folds"),
    "sand": (0.1, "fine"),
    "sun": (0.0, "fine"),
    "street": (0.12, "fine"),
    "building": (0.08, "blotch"),
    "window": (0.05, "fine"),
    "window_off": (0.05, "fine"),
    "wood": (0.15, "strands"),
    "paper": (0.03, "fine"),
}


def value_noise(rng: np.random.Generator, height: int, width: int, cells) -> np.ndarray:
    """Smooth random field in [-1, 1] of [height, width]: a coarse random grid, bicubically upsampled."""
    cx, cy = (cells, cells) if np.isscalar(cells) else cells
    grid = rng.uniform(0, 255, size=(max(2, int(cy)), max(2, int(cx)))).astype(np.uint8)
    field = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    return field / 127.5 - 1.0


def soften(image: np.ndarray, radius: float) -> np.ndarray:
    if radius <= 0.05:
        return image
    img = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _to_image(canvas: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))


def _ground_shadow(
    canvas: np.ndarray, painter: Painter, sk: Skeleton, pl: Placement, strength: float, soft: float
) -> None:
    """Darken an ellipse on the floor under the feet (smaller while jumping)."""
    u = pl.pixels_per_unit
    feet = pl.project(sk.joints[[J["r_ankle"], J["l_ankle"]]])
    lift = max(0.0, float(sk.joints[[J["r_ankle"], J["l_ankle"]], 1].min()) - ANKLE_Y)
    floor_y = pl.project(np.array([[0.0, 0.0, 0.0]]))[0, 1]
    centre = np.array([feet[:, 0].mean(), floor_y])
    shrink = 1.0 / (1.0 + 6 * lift)
    shape = Ellipse(centre, (0.16 + 0.5 * abs(feet[0, 0] - feet[1, 0]) / u) * u * shrink, 0.03 * u * shrink)
    window = painter.window([shape], margin=soft + 2)
    if window is None:
        return
    sd = shape.sdf(painter.xs[window], painter.ys[window])[0]
    alpha = np.clip((soft - sd) / (2 * soft), 0.0, 1.0)[..., None] * strength
    canvas[window] = canvas[window] * (1 - alpha)


# -- whole frames --


def render_photo(
    ch: Character, sk: Skeleton, pl: Placement, layout: SceneLayout, rng: np.random.Generator
) -> Image.Image:
    """A photo-like still: textured, lit background (slightly out of focus), shaded character, sensor noise."""
    H, W = pl.height, pl.width
    look = PhotoLook(rng, H, W)
    painter = Painter(H, W)
    canvas = np.zeros((H, W, 3), dtype=np.float32)
    shade = look.shader()
    for part in scene_parts(layout, H, W):
        painter.paint(canvas, part, shade, softness=0.8)
    canvas = soften(canvas, 0.8 * H / 128)  # depth of field
    _ground_shadow(canvas, painter, sk, pl, strength=0.45, soft=0.05 * pl.pixels_per_unit)
    for part in character_parts(sk, ch, pl, anime=False):
        painter.paint(canvas, part, shade, softness=0.6)
    return _to_image(look.finish(canvas, rng))


def anime_background(layout: SceneLayout, height: int, width: int) -> np.ndarray:
    painter = Painter(height, width)
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    shade = anime_shader(line_width(height, width))
    for part in scene_parts(layout, height, width):
        painter.paint(canvas, part, shade)
    return canvas


def line_width(height: int, width: int) -> float:
    return max(0.8, min(height, width) / 128)


def anime_backdrop(sk: Skeleton, pl: Placement, background: np.ndarray, painter: Painter) -> np.ndarray:
    """An anime frame without the character: the scene and the character's ground shadow (float, 0..1)."""
    canvas = background.copy()
    _ground_shadow(canvas, painter, sk, pl, strength=0.3, soft=0.5)
    return canvas


def render_anime_frame(
    ch: Character, sk: Skeleton, pl: Placement, background: np.ndarray, painter: Painter | None = None
) -> Image.Image:
    painter = painter or Painter(pl.height, pl.width)
    canvas = anime_backdrop(sk, pl, background, painter)
    shade = anime_shader(line_width(pl.height, pl.width))
    for part in character_parts(sk, ch, pl, anime=True):
        painter.paint(canvas, part, shade)
    return _to_image(canvas)


def render_anime_frames(
    ch: Character, dance: str, pl: Placement, layout: SceneLayout, frames: int, fps: float
) -> list[Image.Image]:
    """The anime dance video: frame i shows the dance at t = i / fps (frame 0 = the photo's pose)."""
    background = anime_background(layout, pl.height, pl.width)
    painter = Painter(pl.height, pl.width)
    return [render_anime_frame(ch, skeleton_at(dance, t), pl, background, painter) for t in frame_times(frames, fps)]

"""What the synthetic renderer knows about an anime clip, for scoring generated clips against it.

    truth = clip_truth(plan.character, plan.dance, plan.placement, plan.layout, frames=77, fps=15)
    truth.masks["hair"]          # [T, H, W] bool: the hair's visible interior in each reference frame
    truth.ends[:, 0]             # [T, 2] pixel (x, y) of the right hand's centre in each frame
    found = detect_ends(generated, truth)   # [T, 4, 2] where a simple detector sees the hands and feet

Nothing here changes what the renderer draws: the truth evaluates the very parts ``render.character_parts``
returns, with the painter's geometry, back to front, and records which part covers each pixel. Pixel
coordinates are the renderer's: pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wanray.datasets.character import CLOTH_COLOURS, HAIR_COLOURS, SHOE_COLOURS, SKIN, Character
from wanray.datasets.pose import J, Placement, frame_times, skeleton_at
from wanray.datasets.raster import Ellipse, Painter, Part
from wanray.datasets.render import (
    ANIME_SHADOW,
    LINE,
    anime_backdrop,
    anime_background,
    character_parts,
    hair_highlight,
    line_width,
)
from wanray.datasets.scenes import SceneLayout

REGIONS = ("hair", "top", "bottom")
ENDS = ("r_hand", "l_hand", "r_foot", "l_foot")
END_COLOUR = {"hand": "skin", "foot": "shoes"}  # the palette entry an end is painted in
_ROOTS = ("r_elbow", "l_elbow", "r_knee", "l_knee")  # the joint each end's limb segment starts from
SEARCH_RADIUS = 16.0  # detector window at 128 px (twice the 8 px motion target), scaled with the frame
MATCH_DELTA_E = 25.0  # CIE76: how far a pixel may be from the end's colour (shading, blur, compression)
MIN_BLOB = 2  # pixels: a single matching pixel is noise; a hand half under its sleeve shows only 2-3 clean ones


@dataclass(frozen=True)
class ClipTruth:
    """Per-frame ground truth of an anime clip.

    Attributes:
        masks: region name (``REGIONS``) -> [T, H, W] bool: pixels the region's parts cover and are not
            hidden by nearer parts, outlines excluded (they are drawn dark whatever the colour).
            hair = hair and hair_back; top = torso, sleeves (long-sleeved arms); bottom = trousers or
            shorts, hips, skirt (a dress's skirt too: it is where the demo's dress drifts in colour).
        ends: [T, 4, 2] float pixel (x, y) of the centres of the hands and shoes as drawn (``ENDS`` order).
        roots: [T, 4, 2] the elbows and knees: where each end's limb segment comes from.
        visible: [T, 4] bool: at least half of the hand / shoe is not covered by nearer parts (only visible
            ends are scored).
        end_radius: [4] the drawn hand's / shoe's smaller radius in pixels.
        palette: the character's anime colours, name (skin, shoes, hair, top, bottom, line) -> [n, 3] uint8:
            the flat colour and its shadow tone (hair: and its highlight; the outline: one colour).
        background: [T, H, W, 3] uint8: each frame without the character (the scene and the ground shadow).
    """

    masks: dict[str, np.ndarray]
    ends: np.ndarray
    roots: np.ndarray
    visible: np.ndarray
    end_radius: np.ndarray
    palette: dict[str, np.ndarray]
    background: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.ends)


def part_region(part: Part) -> str | None:
    """Which identity region a character part belongs to (None: skin, shoes, face, ...)."""
    if part.material == "hair" and part.name in ("hair", "hair_back"):
        return "hair"
    if part.material != "cloth":
        return None
    if part.name == "torso" or part.name.endswith(("_sleeve", "_arm")):
        return "top"
    return "bottom"  # skirt, hips, shorts, trouser legs


def clip_truth(
    character: Character, dance: str, placement: Placement, layout: SceneLayout, frames: int, fps: float
) -> ClipTruth:
    """The truth of ``render.render_anime_frames(character, dance, placement, layout, frames, fps)``."""
    H, W = placement.height, placement.width
    painter = Painter(H, W)
    scene = anime_background(layout, H, W)
    per_frame = [_frame_truth(character, dance, float(t), placement, scene, painter) for t in frame_times(frames, fps)]
    return ClipTruth(
        masks={r: np.stack([f[0][r] for f in per_frame]) for r in REGIONS},
        ends=np.stack([f[1] for f in per_frame]),
        roots=np.stack([f[2] for f in per_frame]),
        visible=np.stack([f[3] for f in per_frame]),
        end_radius=per_frame[0][4],
        palette=anime_palette(character),
        background=np.stack([f[5] for f in per_frame]),
    )


def anime_palette(ch: Character) -> dict[str, np.ndarray]:
    """The flat colours and shadow tones the anime style paints the character in, and the hair's highlight."""
    flat = {
        "skin": SKIN[ch.skin],
        "shoes": SHOE_COLOURS[ch.shoes],
        "hair": HAIR_COLOURS[ch.hair_colour],
        "top": CLOTH_COLOURS[ch.top_colour],
        "bottom": CLOTH_COLOURS[ch.bottom_colour],
    }
    tones = {name: np.stack([np.asarray(c, float), np.asarray(c, float) * ANIME_SHADOW]) for name, c in flat.items()}
    tones["hair"] = np.concatenate([tones["hair"], hair_highlight(tones["hair"][:1] / 255) * 255])
    tones["line"] = LINE[None].astype(float) * 255
    return {name: (t + 0.5).astype(np.uint8) for name, t in tones.items()}


def _frame_truth(ch: Character, dance: str, t: float, pl: Placement, scene: np.ndarray, painter: Painter):
    sk = skeleton_at(dance, t)
    parts = character_parts(sk, ch, pl, anime=True)  # back to front, as render_anime_frame paints them
    owner = np.full((pl.height, pl.width), -1, dtype=np.int32)  # index of the part that shows at each pixel
    inside = np.zeros((pl.height, pl.width), dtype=bool)  # ... and whether the pixel is clear of its outline
    lw = line_width(pl.height, pl.width)
    for k, part in enumerate(parts):
        fields = painter.fields(part)
        if fields is None:
            continue
        window, sd = fields[0], fields[1]
        covered = sd < 0  # the painter's coverage is 0.5 - sd: more than half the pixel
        inside[window][sd < 0.5] = False  # any coverage by this part's edge blends its outline into the pixel
        owner[window][covered] = k
        # anime_shader blends the outline in where sd > -(line width + 0.5)
        inside[window][covered] = sd[covered] <= -((lw if part.outline else 0.0) + 0.5)
    masks = {r: np.zeros_like(inside) for r in REGIONS}
    for k, part in enumerate(parts):
        region = part_region(part)
        if region is not None:
            masks[region] |= (owner == k) & inside
    names = {p.name: k for k, p in enumerate(parts)}
    hand_part = "{}_hand" if ch.long_sleeves else "{}_arm"  # short sleeves: the hand is a shape of the arm
    ends, radius, visible = [], [], []
    for end in ENDS:
        side, kind = end.split("_")
        k = names[(hand_part if kind == "hand" else "{}_shoe").format(side)]
        shape = next(s for s in parts[k].shapes if isinstance(s, Ellipse))
        ends.append(np.asarray(shape.c, dtype=float))
        radius.append(min(float(shape.rx), float(shape.ry)))
        visible.append(_is_visible(shape, owner, k, painter))
    roots = pl.project(sk.joints[[J[name] for name in _ROOTS]])
    backdrop = anime_backdrop(sk, pl, scene, painter)
    background = (np.clip(backdrop, 0, 1) * 255 + 0.5).astype(np.uint8)  # as render._to_image rounds
    return masks, np.stack(ends), roots, np.array(visible), np.array(radius), background


def _is_visible(shape: Ellipse, owner: np.ndarray, k: int, painter: Painter) -> bool:
    """At least half of the end's drawn pixels are not covered by nearer parts."""
    window = painter.window([shape], margin=0)
    if window is None:
        return False
    drawn = shape.sdf(painter.xs[window], painter.ys[window])[0] < 0
    shown = owner[window][drawn] == k
    return bool(shown.sum() >= 0.5 * max(drawn.sum(), 1))


# -- a simple hand / foot detector --


def detect_ends(frames: np.ndarray, truth: ClipTruth, search_radius: float | None = None) -> np.ndarray:
    """Where the hands and feet are in ``frames`` (uint8 [T, H, W, 3]): [T, 4, 2] pixel (x, y), NaN if not found.

    Each pixel is given the nearest of the character's palette colours and the frame's known background
    (CIE76 in CIELAB; a tie goes to the end's colour, as black shoes under black trousers). For each end,
    in a disc around the true position (``search_radius``, default 16 px at 128 px), pixels given the
    end's colour (skin for hands, the shoes' for feet) and within ``MATCH_DELTA_E`` of it are candidates;
    it keeps the candidate blob nearest the true position and returns the centroid of that blob's tip:
    its pixels within one end diameter of its farthest point along the limb (elbow -> hand, knee -> foot,
    from the truth), because a short-sleeved hand is one skin blob with its forearm. So the detector is
    told where to look and which way the limb points, but not where in the window the end is.
    """
    from scipy import ndimage
    from skimage.color import rgb2lab

    frames = np.asarray(frames)
    T, H, W = frames.shape[:3]
    if frames.shape[:3] != truth.background.shape[:3]:
        raise ValueError(f"frames {list(frames.shape)} do not match the truth's {list(truth.background.shape)}")
    radius = search_radius if search_radius is not None else SEARCH_RADIUS * min(H, W) / 128
    lab, lab_bg = rgb2lab(frames), rgb2lab(truth.background)
    palette = {name: rgb2lab(tones[None])[0] for name, tones in truth.palette.items()}
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    found = np.full((T, len(ENDS), 2), np.nan)
    for t in range(T):
        dist = {name: np.linalg.norm(lab[t][..., None, :] - tones, axis=-1).min(-1) for name, tones in palette.items()}
        dist["background"] = np.linalg.norm(lab[t] - lab_bg[t], axis=-1)
        for j, end in enumerate(ENDS):
            colour = END_COLOUR[end.split("_")[1]]
            others = np.min([d for name, d in dist.items() if name != colour], axis=0)
            cx, cy = truth.ends[t, j]
            near = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
            candidates = near & (dist[colour] <= others) & (dist[colour] < MATCH_DELTA_E)
            blobs, n = ndimage.label(candidates, structure=np.ones((3, 3)))
            best, best_d = 0, np.inf
            for b in range(1, n + 1):
                mask = blobs == b
                if mask.sum() >= MIN_BLOB:
                    d = np.hypot(xs[mask] - cx, ys[mask] - cy).min()
                    if d < best_d:
                        best, best_d = b, d
            if best:
                mask = blobs == best
                found[t, j] = _tip(xs[mask], ys[mask], truth.roots[t, j], truth.ends[t, j], 2 * truth.end_radius[j])
    return found


def _tip(px: np.ndarray, py: np.ndarray, root: np.ndarray, end: np.ndarray, length: float) -> np.ndarray:
    """Centroid of the blob's pixels within ``length`` of its farthest point along root -> end."""
    axis = end - root
    norm = np.hypot(*axis)
    if norm < 1e-6:  # the limb points at the camera: no direction, the whole blob is the tip
        return np.array([px.mean(), py.mean()])
    along = ((px - root[0]) * axis[0] + (py - root[1]) * axis[1]) / norm
    tip = along >= along.max() - length
    return np.array([px[tip].mean(), py[tip].mean()])


def end_errors(found: np.ndarray, truth: ClipTruth, miss: float | None = None) -> np.ndarray:
    """[T, 4] pixel distance of each found end from the truth; ``miss`` where none was found (default:
    the search radius: "at least that far off"); NaN where the truth end is hidden (not scored)."""
    H, W = truth.background.shape[1:3]
    miss = miss if miss is not None else SEARCH_RADIUS * min(H, W) / 128
    err = np.hypot(*(found - truth.ends).transpose(2, 0, 1))
    err = np.where(np.isnan(err), miss, err)
    return np.where(truth.visible, err, np.nan)


def readable_ends(reference: np.ndarray, truth: ClipTruth, max_px: float = 3.0) -> np.ndarray:
    """[T, 4] bool: the visible ends the detector finds within ``max_px`` of the truth on the reference clip
    itself. Only these are worth scoring on a generated clip: where the detector misreads the truth (a dark
    hand half under a sleeve, a hand of the top's colour), its reading of a generated frame means nothing."""
    errors = end_errors(detect_ends(reference, truth), truth)
    return np.nan_to_num(errors, nan=np.inf) <= max_px

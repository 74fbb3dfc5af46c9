"""Video quality metrics: per-frame PSNR and SSIM against a reference, flicker, and the acceleration gate.

    from wanray.metrics import compare_videos, acceleration_gate
    m = compare_videos(generated, reference)      # uint8 [T, H, W, 3] each
    print(m.psnr_mean, m.ssim_mean, m.flicker)
    gate = acceleration_gate(tea_cache_frames, reference_frames)   # same seed, same request
    assert gate.passed, gate.reasons

Conventions (the seed's, made exact):
- No arithmetic in uint8, whose differences wrap around (3 - 5 = 254): PSNR sums squared differences
  exactly in integers, everything else is float64.
- PSNR uses data range 255 and the mean squared error over all pixels and channels of a frame, as
  ``skimage.metrics.peak_signal_noise_ratio``. Identical frames have an infinite PSNR; we report
  ``PSNR_CAP`` (100 dB) instead, so means and CSV files stay finite.
- SSIM is ``skimage.metrics.structural_similarity`` with its defaults (7x7 uniform window, K1 0.01,
  K2 0.03, sample covariance) and data range 255, frame by frame: ``ssim`` on grey (ITU-R BT.601 luma
  0.299 R + 0.587 G + 0.114 B, kept in float), ``ssim_rgb`` the mean of the three channels' SSIM.
  scikit-image comes with the ``eval`` extra (``pip install 'wanray[eval]'``).
- Quality bands from the seed: PSNR >= 32 dB is high quality, SSIM >= 0.85 is good.
- Region colour (``region_delta_e``, the identity target): CIEDE2000 between the mean CIELAB colours of a
  region in two frames, the region given by masks (for synthetic clips: ``wanray.datasets.truth``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical frames (their PSNR is infinite)
PSNR_HIGH_QUALITY = 32.0  # the seed's band: PSNR >= 32 dB is high quality
SSIM_GOOD = 0.85  # the seed's band: SSIM >= 0.85 is good
DATA_RANGE = 255.0
SSIM_WINDOW = 7  # scikit-image's default window: frames must be at least this wide and high
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's "L" and OpenCV's RGB2GRAY


@dataclass(frozen=True)
class VideoMetrics:
    """How close a generated video is to its reference, frame by frame.

    Attributes:
        psnr: [T] PSNR of each frame in dB (``PSNR_CAP`` where the frames are identical).
        ssim: [T] SSIM of each frame on grey (BT.601 luma).
        ssim_rgb: [T] SSIM of each frame, mean over the R, G and B channels.
        flicker: temporal flicker of the generated video, in grey levels (0-255): the mean absolute
            difference between each inner frame's mean grey level and the average of its two
            neighbours'. Global brightness pumping from frame to frame scores high (alternating
            between two levels ``a`` apart scores ``a``); motion of the person and steady fades or
            camera exposure ramps score ~0. 0 for videos of fewer than 3 frames.
        flicker_reference: the same measure for the reference video, the level to compare against.
    """

    psnr: np.ndarray = field(repr=False)
    ssim: np.ndarray = field(repr=False)
    ssim_rgb: np.ndarray = field(repr=False)
    flicker: float
    flicker_reference: float

    @property
    def frames(self) -> int:
        return len(self.psnr)

    @property
    def psnr_mean(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def psnr_min(self) -> float:
        return float(np.min(self.psnr))

    @property
    def ssim_mean(self) -> float:
        return float(np.mean(self.ssim))

    @property
    def ssim_min(self) -> float:
        return float(np.min(self.ssim))

    @property
    def ssim_rgb_mean(self) -> float:
        return float(np.mean(self.ssim_rgb))

    @property
    def psnr_band(self) -> str:
        return psnr_band(self.psnr_mean)

    @property
    def ssim_band(self) -> str:
        return ssim_band(self.ssim_mean)

    def to_dict(self) -> dict:
        """Summaries and per-frame lists (JSON-ready)."""
        return {
            "frames": self.frames,
            "psnr_mean": self.psnr_mean,
            "psnr_min": self.psnr_min,
            "ssim_mean": self.ssim_mean,
            "ssim_min": self.ssim_min,
            "ssim_rgb_mean": self.ssim_rgb_mean,
            "flicker": self.flicker,
            "flicker_reference": self.flicker_reference,
            "psnr_band": self.psnr_band,
            "ssim_band": self.ssim_band,
            "psnr": [float(v) for v in self.psnr],
            "ssim": [float(v) for v in self.ssim],
            "ssim_rgb": [float(v) for v in self.ssim_rgb],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "VideoMetrics":
        return cls(
            psnr=np.asarray(data["psnr"], dtype=np.float64),
            ssim=np.asarray(data["ssim"], dtype=np.float64),
            ssim_rgb=np.asarray(data["ssim_rgb"], dtype=np.float64),
            flicker=float(data["flicker"]),
            flicker_reference=float(data["flicker_reference"]),
        )


def psnr_band(psnr_db: float) -> str:
    return "high" if psnr_db >= PSNR_HIGH_QUALITY else "below high"


def ssim_band(ssim: float) -> str:
    return "good" if ssim >= SSIM_GOOD else "below good"


def compare_videos(generated: np.ndarray, reference: np.ndarray) -> VideoMetrics:
    """Per-frame PSNR and SSIM of ``generated`` against ``reference`` (uint8 [T, H, W, 3] each).

    Generated frames of another size are centre-cropped to the reference's aspect ratio and resized
    to it (``wanray.video.fit``, bicubic). Both videos must have the same number of frames.
    """
    generated = _check_video(generated, "generated")
    reference = _check_video(reference, "reference")
    if len(generated) != len(reference):
        raise ValueError(
            f"generated has {len(generated)} frames but reference has {len(reference)}; compare equal lengths "
            f"(e.g. the first {min(len(generated), len(reference))} frames of each)"
        )
    if generated.shape[1:3] != reference.shape[1:3]:
        generated = resize_video(generated, height=reference.shape[1], width=reference.shape[2])
    grey_generated, grey_reference = to_grey(generated), to_grey(reference)
    return VideoMetrics(
        psnr=psnr_per_frame(generated, reference),
        ssim=ssim_per_frame(grey_generated, grey_reference),
        ssim_rgb=ssim_per_frame(generated, reference),
        flicker=_flicker_of_grey(grey_generated),
        flicker_reference=_flicker_of_grey(grey_reference),
    )


def psnr_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[T] PSNR in dB of uint8 frames [T, H, W(, C)]; ``PSNR_CAP`` for identical frames."""
    diff = a.astype(np.int32) - b.astype(np.int32)  # uint8 subtraction would wrap around (3 - 5 = 254)
    squared = (diff * diff).reshape(len(diff), -1)  # [T, pixels]: exact, at most 255^2
    mse = squared.sum(axis=1, dtype=np.int64) / squared.shape[1]  # [T], exact sums, then float64
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(DATA_RANGE**2 / mse)
    return np.minimum(psnr, PSNR_CAP)


def to_grey(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] RGB -> [T, H, W] float64 BT.601 luma (0..255, not rounded)."""
    r, g, b = (frames[..., i].astype(np.float64) for i in range(3))
    return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def ssim_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[T] SSIM of grey [T, H, W] or colour [T, H, W, C] frames (colour: the mean over channels), 0..255 values."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise ImportError("SSIM needs scikit-image: pip install 'wanray[eval]' (or scikit-image)") from None
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs frames of equal shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1]}x{a.shape[2]}"
        )
    channel_axis = -1 if a.ndim == 4 else None
    return np.array(
        [structural_similarity(x, y, data_range=DATA_RANGE, channel_axis=channel_axis) for x, y in zip(a, b)],
        dtype=np.float64,
    )


def flicker(frames: np.ndarray) -> float:
    """Mean |L(t) - (L(t-1) + L(t+1)) / 2| over inner frames, L = a frame's mean grey level (see VideoMetrics)."""
    return _flicker_of_grey(to_grey(frames))


def _flicker_of_grey(grey: np.ndarray) -> float:
    if len(grey) < 3:
        return 0.0
    level = grey.mean(axis=(1, 2))  # [T]
    return float(np.mean(np.abs(level[1:-1] - (level[:-2] + level[2:]) / 2)))


def resize_video(frames: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """[T, H, W, 3] uint8 -> [T, height, width, 3]: centre crop to the aspect ratio, bicubic resize."""
    from PIL import Image

    from wanray.video import fit

    return np.stack([np.asarray(fit(Image.fromarray(f), width, height), dtype=np.uint8) for f in frames])


def _check_video(video: np.ndarray, what: str) -> np.ndarray:
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{what} must be a uint8 array [T, H, W, 3], got {video.dtype} {list(video.shape)}")
    if len(video) == 0:
        raise ValueError(f"{what} has no frames")
    return video


# -- the acceleration gate --

DEFAULT_GATE_MIN_PSNR = PSNR_HIGH_QUALITY
DEFAULT_GATE_MIN_SSIM = SSIM_GOOD


@dataclass(frozen=True)
class GateResult:
    """Whether an accelerated run stays close enough to the reference run; ``reasons`` say why not."""

    passed: bool
    metrics: VideoMetrics
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": list(self.reasons), "metrics": self.metrics.to_dict()}


def acceleration_gate(
    accelerated: np.ndarray,
    reference: np.ndarray,
    *,
    min_psnr: float = DEFAULT_GATE_MIN_PSNR,
    min_ssim: float = DEFAULT_GATE_MIN_SSIM,
    max_flicker_increase: float | None = None,
) -> GateResult:
    """Compare an accelerated run (TeaCache, FP8, fewer steps, another attention backend) with the
    same-seed, same-request reference run (uint8 [T, H, W, 3] each).

    Passes when the mean PSNR is at least ``min_psnr`` dB (default 32, the seed's "high quality") and
    the mean grey SSIM at least ``min_ssim`` (default 0.85, the seed's "good"); with
    ``max_flicker_increase`` set, the accelerated video's flicker may also exceed the reference's by at
    most that many grey levels. Every failed condition is one line in ``reasons`` with the numbers.
    """
    metrics = compare_videos(accelerated, reference)
    reasons = []
    if metrics.psnr_mean < min_psnr:
        worst = int(np.argmin(metrics.psnr))
        reasons.append(
            f"mean PSNR {metrics.psnr_mean:.2f} dB < {min_psnr:g} dB "
            f"(worst frame {worst}: {metrics.psnr[worst]:.2f} dB)"
        )
    if metrics.ssim_mean < min_ssim:
        worst = int(np.argmin(metrics.ssim))
        reasons.append(
            f"mean SSIM {metrics.ssim_mean:.4f} < {min_ssim:g} (worst frame {worst}: {metrics.ssim[worst]:.4f})"
        )
    if max_flicker_increase is not None and metrics.flicker - metrics.flicker_reference > max_flicker_increase:
        reasons.append(
            f"flicker {metrics.flicker:.2f} exceeds the reference's {metrics.flicker_reference:.2f} by more than "
            f"{max_flicker_increase:g} grey levels"
        )
    return GateResult(passed=not reasons, metrics=metrics, reasons=tuple(reasons))


# -- colour of regions (identity) --


def region_delta_e(
    generated: np.ndarray, reference: np.ndarray, masks: dict[str, np.ndarray], min_pixels: int = 4
) -> dict[str, np.ndarray]:
    """Per frame, how far each region's mean colour in ``generated`` is from the same region's in ``reference``.

    ``generated`` and ``reference`` are uint8 [T, H, W, 3]; ``masks`` maps a region name to bool [T, H, W]
    (the reference's regions, used for both: the generated person should stand where the reference one
    does). The mean is taken in CIELAB (``skimage.color.rgb2lab``, D65) over the region's pixels, and
    the two means are compared with CIEDE2000 (``skimage.color.deltaE_ciede2000``). Returns region ->
    [T] Delta-E, NaN in frames where the region has fewer than ``min_pixels`` pixels.
    """
    try:
        from skimage.color import deltaE_ciede2000, rgb2lab
    except ImportError:
        raise ImportError("Delta-E needs scikit-image: pip install 'wanray[eval]' (or scikit-image)") from None
    generated, reference = _check_video(generated, "generated"), _check_video(reference, "reference")
    if generated.shape != reference.shape:
        raise ValueError(f"generated {list(generated.shape)} and reference {list(reference.shape)} differ in shape")
    lab_gen, lab_ref = rgb2lab(generated), rgb2lab(reference)
    out = {}
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != generated.shape[:3]:
            raise ValueError(f"mask {name!r} is {list(mask.shape)}, the frames are {list(generated.shape[:3])}")
        delta = np.full(len(mask), np.nan)
        for t, m in enumerate(mask):
            if m.sum() >= min_pixels:
                delta[t] = deltaE_ciede2000(lab_gen[t][m].mean(0), lab_ref[t][m].mean(0))
        out[name] = delta
    return out

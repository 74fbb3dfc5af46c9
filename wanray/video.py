"""Reading and writing images and videos (imageio + its bundled ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop to the target aspect ratio, then resize: no stretching of the person in the photo."""
    return ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.BICUBIC)


def read_video(path: Path | str, max_frames: int | None = None) -> tuple[list[Image.Image], float]:
    """Frames (RGB PIL images) and frames-per-second of a video file."""
    import imageio.v3 as iio

    path = str(path)
    meta = iio.immeta(path, plugin="pyav") if _has_pyav() else iio.immeta(path)
    fps = float(meta.get("fps") or meta.get("average_rate") or 0) or 15.0
    frames = []
    for i, frame in enumerate(iio.imiter(path)):
        if max_frames is not None and i >= max_frames:
            break
        frames.append(Image.fromarray(np.asarray(frame)).convert("RGB"))
    return frames, fps


def write_mp4(frames: list[Image.Image] | np.ndarray, path: Path | str, fps: float, quality: int = 8) -> Path:
    """h264 mp4 (yuv420p, playable in browsers and phones); sizes are made even, as yuv420p needs."""
    import imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(
        str(path), fps=fps, codec="libx264", quality=quality, pixelformat="yuv420p", macro_block_size=2,
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    finally:
        writer.close()
    return path


def frames_to_array(frames: list[Image.Image]) -> np.ndarray:
    """[T, H, W, 3] uint8."""
    return np.stack([np.asarray(f.convert("RGB"), dtype=np.uint8) for f in frames])


def _has_pyav() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None

"""Reading and writing images and videos (imageio + its bundled ffmpeg, or PyAV)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop to the target aspect ratio, then resize: no stretching of the person in the photo."""
    return ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.BICUBIC)


def nearest_source_frame(i: int, source_fps: float, fps: float) -> int:
    """The source frame nearest to time i / fps: how a clip of ``fps`` is sampled from a file of ``source_fps``
    (training, evaluation and generation inputs alike)."""
    return int(math.floor(i * (source_fps / fps) + 0.5))  # the ratio first: the indices training always used


def read_video(path: Path | str, max_frames: int | None = None,
               at_fps: float | None = None) -> tuple[list[Image.Image], float]:
    """Frames (RGB PIL images) and frames-per-second of a video file (the file's rate, whatever ``at_fps``).

    ``at_fps``: sample the video at this rate, frame i being the source frame nearest to time i / at_fps, as training
    data is sampled (``nearest_source_frame``): a 30 fps pose video drives a 15 fps clip at its own speed.
    ``max_frames`` counts the frames returned."""
    import imageio.v3 as iio

    path = str(path)
    meta = iio.immeta(path, plugin="pyav") if _has_pyav() else iio.immeta(path)
    fps = float(meta.get("fps") or meta.get("average_rate") or 0) or 15.0
    frames: list[Image.Image] = []
    for j, frame in enumerate(iio.imiter(path)):
        if max_frames is not None and len(frames) >= max_frames:
            break
        image = None
        while (max_frames is None or len(frames) < max_frames) and nearest_source_frame(len(frames), fps,
                                                                                        at_fps or fps) == j:
            image = image or Image.fromarray(np.asarray(frame)).convert("RGB")
            frames.append(image)  # a slower source repeats a frame; a faster one skips those no time falls on
    return frames, fps


def write_mp4(frames: list[Image.Image] | np.ndarray, path: Path | str, fps: float, quality: int = 8) -> Path:
    """h264 mp4 (yuv420p, playable in browsers and phones); sizes are made even, as yuv420p needs.

    Written with imageio's bundled ffmpeg; where imageio-ffmpeg is absent (a lean GPU host), with PyAV.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not has_imageio_ffmpeg() and _has_pyav():
        return _write_mp4_pyav(frames, path, fps)
    import imageio

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


def _write_mp4_pyav(frames: list[Image.Image] | np.ndarray, path: Path, fps: float) -> Path:
    import imageio.v3 as iio

    video = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])  # [T, H, W, 3]
    pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2  # yuv420p needs even sizes: repeat the last row/column
    video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    iio.imwrite(path, video, plugin="pyav", codec="libx264", fps=float(fps), out_pixel_format="yuv420p")
    return path


def frames_to_array(frames: list[Image.Image]) -> np.ndarray:
    """[T, H, W, 3] uint8."""
    return np.stack([np.asarray(f.convert("RGB"), dtype=np.uint8) for f in frames])


def _has_pyav() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


def has_imageio_ffmpeg() -> bool:
    import importlib.util

    return importlib.util.find_spec("imageio_ffmpeg") is not None

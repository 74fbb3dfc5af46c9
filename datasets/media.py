"""Reading dataset videos with one ffmpeg process each (metadata and frames from the same reader).

``wanray.video.read_video`` opens a file twice (metadata, then frames); validating or ingesting
thousands of entries pays for every process start, so these read both at once. Where imageio-ffmpeg
is absent (a lean GPU host), PyAV decodes in-process.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np


@dataclass
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int

    def size(self) -> str:
        return f"{self.width}x{self.height}"


@contextmanager
def open_frames(path: Path | str) -> Iterator[tuple[float, Iterator[np.ndarray]]]:
    """The frame rate (0 when the file has none) and an iterator of RGB frames (uint8 [H, W, 3]), decoded one at a
    time: a reader that keeps only what it needs never holds the whole source."""
    with _open(path) as (fps, reader):
        yield fps, (np.asarray(frame)[..., :3] for frame in reader)


def read_frames(path: Path | str, limit: int | Callable[[float], int] | None = None) -> tuple[list[np.ndarray], float]:
    """RGB frames (uint8 [H, W, 3]) and the frame rate (0 when the file has none).

    ``limit``: at most this many frames, or a function of the file's fps giving that number (so a
    job reads exactly the frames it samples, whatever the source rate).
    """
    with open_frames(path) as (fps, frames):
        most = limit(fps) if callable(limit) else limit
        kept = []
        for frame in frames:
            if most is not None and len(kept) >= most:
                break
            kept.append(frame)
    return kept, fps


def probe_video(path: Path | str) -> VideoInfo:
    """Decode every frame (the only sure way to know a video is whole) and count them."""
    with _open(path) as (fps, reader):
        frames, height, width = 0, 0, 0
        for frame in reader:
            if frames == 0:
                height, width = frame.shape[:2]
            frames += 1
    return VideoInfo(frames=frames, fps=fps, width=width, height=height)


@contextmanager
def _open(path: Path | str) -> Iterator[tuple[float, Iterator[np.ndarray]]]:
    """(fps or 0, frames): imageio's ffmpeg reader, or PyAV where imageio-ffmpeg is absent."""
    from wanray.video import has_imageio_ffmpeg

    if has_imageio_ffmpeg():
        import imageio.v2 as iio

        reader = iio.get_reader(str(path), format="FFMPEG")
        try:
            yield float(reader.get_meta_data().get("fps") or 0), iter(reader)
        finally:
            reader.close()
    else:
        import imageio.v3 as iio

        with iio.imopen(str(path), "r", plugin="pyav") as file:
            yield float(file.metadata().get("fps") or 0), file.iter()

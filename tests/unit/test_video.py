"""mp4 writing: imageio's ffmpeg, and PyAV where imageio-ffmpeg is absent (lean GPU hosts)."""

import numpy as np
import pytest

from wanray import video
from wanray.datasets import media


def _smooth_frames(rng, frames: int, height: int, width: int) -> np.ndarray:
    """[T, H, W, 3] uint8: random colour ramps (h264 keeps smooth content within a few levels)."""
    ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.5, 1, height)[:, None, None]
    colours = rng.uniform(40, 200, size=(frames, 1, 1, 3))
    return (colours * (0.5 + ramp[None])).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("writer", ["ffmpeg", "pyav"])
def test_write_mp4_round_trips_frames_and_fps(writer, tmp_path, monkeypatch):
    rng = np.random.default_rng()
    if writer == "pyav":
        monkeypatch.setattr(video, "has_imageio_ffmpeg", lambda: False)
    frames = _smooth_frames(rng, 9, 33, 48)  # odd height: padded to even for yuv420p
    path = video.write_mp4(list(frames), tmp_path / "sub" / "clip.mp4", fps=15)
    back, fps = video.read_video(path)
    assert len(back) == 9 and fps == pytest.approx(15)
    got = video.frames_to_array(back)
    assert got.shape[1:] in {(33, 48, 3), (34, 48, 3)}
    error = np.abs(got[:, :33].astype(float) - frames.astype(float)).mean()
    assert error < 6, f"{writer}: mean abs error {error:.1f} levels"
    # the dataset reader (one process per file) reads the same frames through the same backend
    read, read_fps = media.read_frames(path, limit=lambda rate: 5)
    assert len(read) == 5 and read_fps == pytest.approx(15)
    assert np.array_equal(np.stack(read), got[:5])
    assert media.probe_video(path) == media.VideoInfo(frames=9, fps=read_fps, width=48, height=got.shape[1])


@pytest.mark.parametrize("source_fps, at_fps", [(30, 15), (10, 15), (24, 15), (15, 15)])
def test_a_video_read_at_another_rate_keeps_its_timing(tmp_path, source_fps, at_fps):
    """Frame i of the result is the source frame nearest to time i / at_fps, as training samples its clips."""
    from wanray.datasets.shape import VideoShape

    count = int(np.random.default_rng().integers(20, 40))
    levels = np.arange(count) * (250 // count)  # source frame j is flat grey of level levels[j]
    frames = [np.full((16, 16, 3), level, np.uint8) for level in levels]
    path = video.write_mp4(frames, tmp_path / "clip.mp4", fps=source_fps)
    wanted = VideoShape(height=16, width=16, frames=9, fps=at_fps).source_indices(source_fps)
    back, fps = video.read_video(path, max_frames=9, at_fps=at_fps)
    assert fps == pytest.approx(source_fps) and len(back) == 9
    got = [int(np.asarray(f).mean().round()) for f in back]
    assert np.abs(np.array(got) - levels[wanted]).max() <= 3, (got, levels[wanted].tolist())

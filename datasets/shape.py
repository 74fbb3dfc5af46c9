"""What a job needs from every entry: output height x width, a 4n+1 frame count, and a frame rate.

Validation and ingest share the frame-sampling rule below, so a row that validates for a job is a
row that ingest can decode for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wanray.inputs import check_frames, check_size
from wanray.video import nearest_source_frame


@dataclass(kw_only=True, frozen=True)
class VideoShape:
    """Output size and timing of decoded entries (the embedded model's default: 128x128, 81 frames, 15 fps)."""

    height: int = 128
    width: int = 128
    frames: int = 81  # 4n+1: Wan's VAE compresses time 4x
    fps: float = 15.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps", float(self.fps))  # 15 and 15.0 are one shape (and one cache fingerprint)
        check_size(self.height, self.width)
        check_frames(self.frames)
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be from 1 to 120, got {self.fps}")

    @property
    def seconds(self) -> float:
        return (self.frames - 1) / self.fps

    def as_dict(self) -> dict:
        return asdict(self)

    def source_indices(self, source_fps: float) -> list[int]:
        """Which source frames make the output: frame i shows time i / fps (nearest source frame, from 0)."""
        return [nearest_source_frame(i, source_fps, self.fps) for i in range(self.frames)]

    def source_frames_needed(self, source_fps: float) -> int:
        return self.source_indices(source_fps)[-1] + 1

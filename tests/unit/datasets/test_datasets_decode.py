"""Decoding one entry: the job's frames sampled from any source rate, without holding the whole source."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from wanray.datasets.ingest import IngestError, decode_entry
from wanray.datasets.media import read_frames
from wanray.datasets.shape import VideoShape
from wanray.video import fit, write_mp4

JOB = VideoShape(height=32, width=32, frames=9, fps=15)


@pytest.fixture(scope="module")
def big_source(tmp_path_factory):
    """A 512x512 clip at 60 fps: 33 source frames (26 MB decoded) make the job's 9 frames of 32x32 (28 KB)."""
    rng = np.random.default_rng()
    path = tmp_path_factory.mktemp("decode") / "big.mp4"
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    frames = [Image.fromarray(np.roll(base, i, axis=1)).resize((512, 512), Image.NEAREST) for i in range(36)]
    write_mp4(frames, path, 60)
    return path


def test_the_jobs_frames_are_the_nearest_source_frames_fitted(big_source):
    row = decode_entry({"id": "e", "prompt": "p", "video": str(big_source)}, JOB)
    source, fps = read_frames(big_source)
    expected = np.stack([np.asarray(fit(Image.fromarray(source[i]), 32, 32)) for i in JOB.source_indices(fps)])
    assert fps == 60 and row["video"].shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(row["video"], expected)


def test_decoding_holds_a_few_source_frames_not_the_whole_source(big_source):
    decode_entry({"id": "e", "prompt": "p", "video": str(big_source)}, JOB)  # warm: codecs, imports
    tracemalloc.start()
    decode_entry({"id": "e", "prompt": "p", "video": str(big_source)}, JOB)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frame = 512 * 512 * 3
    assert peak < 6 * frame, f"peak {peak / 2**20:.1f} MiB while decoding (one source frame is {frame / 2**20:.2f} MiB)"


def test_a_source_too_short_names_what_the_job_needs(big_source):
    long_job = VideoShape(height=32, width=32, frames=17, fps=15)  # 65 source frames at 60 fps; the file has 36
    with pytest.raises(IngestError, match=r"has 36 frames at 60 fps .* i\.e\. 65 source frames"):
        decode_entry({"id": "e", "prompt": "p", "video": str(big_source)}, long_job)

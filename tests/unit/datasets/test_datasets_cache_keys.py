"""Cache keys and inputs, without Ray: fingerprints and which conditioning a model is given."""

import numpy as np
import pytest
from PIL import Image

from wanray.datasets.cache import as_shape, fingerprint, inputs_for_model
from wanray.datasets.shape import VideoShape
from wanray.encoding import TrainingSample
from wanray.specs import embedded, wan21_i2v_14b_720p


def test_fingerprint_names_model_and_shape():
    base = fingerprint("embedded", VideoShape(height=64, width=64, frames=9, fps=15))
    assert base == fingerprint("embedded", (9, 64, 64)) == fingerprint("embedded", (9, 64, 64, 15.0))
    others = {fingerprint("embedded", s) for s in [(13, 64, 64), (9, 64, 80), (9, 80, 64), (9, 64, 64, 12)]}
    assert base not in others and len(others) == 4


def test_fingerprint_follows_the_model_files(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    shape = (9, 64, 64)
    assert fingerprint(str(copy), shape) == fingerprint(str(tiny_model_dir), shape)
    vae = copy / "Wan2.1_VAE.pth"
    data = bytearray(vae.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte different (the hash reads each file's first and last MiB)
    vae.write_bytes(bytes(data))
    assert fingerprint(str(copy), shape) != fingerprint(str(tiny_model_dir), shape)


def test_shapes_given_as_tuples_must_be_complete():
    with pytest.raises(ValueError, match=r"\(frames, height, width\[, fps\]\)"):
        as_shape((64, 64))


def _sample():
    rng = np.random.default_rng()
    frames = [Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")) for _ in range(5)]
    return TrainingSample(
        video=frames,
        prompt="x",
        input_image=frames[0],
        vace_video=frames,
        control_video=frames,
        vace_reference_image=frames[0],
    )


def test_a_model_gets_only_the_conditioning_it_takes():
    vace_model = inputs_for_model(_sample(), embedded())
    assert vace_model.control_video is None  # not a Fun-Control DiT: a control video would overwrite y
    assert vace_model.vace_video is not None and vace_model.input_image is not None
    plain_i2v = inputs_for_model(_sample(), wan21_i2v_14b_720p())
    assert plain_i2v.control_video is None and plain_i2v.vace_video is None and plain_i2v.vace_reference_image is None

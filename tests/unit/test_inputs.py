"""Every class of bad input is refused before model work, with a message that says what to fix."""

import io

import numpy as np
import pytest
from PIL import Image

from wanray.config import GenerationConfig, LoraRef
from wanray.inputs import InvalidInput, check_frames, check_size, load_image, open_image_checked, prepare
from wanray.specs import embedded


def test_frames_75_is_rejected_with_the_two_nearest():
    with pytest.raises(InvalidInput, match=r"4n\+1.*got 75; use 73 or 77"):
        check_frames(75)
    check_frames(77)
    check_frames(1)


@pytest.mark.parametrize("frames", [0, -4, 245])
def test_frames_out_of_range(frames):
    with pytest.raises(InvalidInput, match="frames"):
        check_frames(frames)


def test_size_must_be_multiple_of_16():
    with pytest.raises(InvalidInput, match=r"multiples of 16 but are 721 and 1280; try 720x1280"):
        check_size(721, 1280)
    with pytest.raises(InvalidInput, match="height must be a positive"):
        check_size(0, 64)
    with pytest.raises(InvalidInput, match="at most 2048"):
        check_size(4096, 64)


def test_image_checks(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        load_image(tmp_path / "nope.png")
    txt = tmp_path / "photo.gif"
    txt.write_bytes(b"GIF89a")
    with pytest.raises(InvalidInput, match=r"must be one of \.jpg"):
        load_image(txt)
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not really a jpeg")
    with pytest.raises(InvalidInput, match="could not be read as an image"):
        load_image(bad)
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 40)).save(small)
    with pytest.raises(InvalidInput, match="at least 16 pixels"):
        load_image(small)
    tiff_as_png = tmp_path / "fake.png"
    Image.new("RGB", (32, 32)).save(tiff_as_png, format="TIFF")
    with pytest.raises(InvalidInput, match="TIFF image"):
        load_image(tiff_as_png)


def _jpeg(pixels: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, **save)
    return buffer.getvalue()


def test_a_jpeg_cut_short_is_refused_with_a_message_not_a_crash(tmp_path):
    whole = _jpeg(np.random.default_rng().integers(0, 256, (48, 64, 3), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="cut short or damaged"):
        open_image_checked(whole[: len(whole) * 2 // 3], "photo")
    path = tmp_path / "photo.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidInput, match="photo.*cut short"):
        load_image(path, "photo")


def test_a_phone_portrait_is_turned_upright_by_its_exif_orientation():
    # stored landscape (64 wide, 48 tall) with Orientation 6 ("rotate 90 clockwise to view"), as phones save portraits
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :16] = 255  # a white band on the stored image's left edge: the viewed image's top
    exif = Image.Exif()
    exif[0x0112] = 6
    viewed = np.asarray(open_image_checked(_jpeg(stored, exif=exif.tobytes()), "photo").convert("RGB"))
    assert viewed.shape == (64, 48, 3)
    assert viewed[:12].mean() > 200 and viewed[20:].mean() < 30
    plain = open_image_checked(_jpeg(stored), "photo")  # no tag: as stored
    assert plain.size == (64, 48)


def test_too_many_pixels(tmp_path, monkeypatch):
    import wanray.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    with pytest.raises(InvalidInput, match="1,600 pixels; the limit is 1,000"):
        load_image(path)


def _config(photo, **kw):
    return GenerationConfig(image=photo, prompt="a dancer", frames=5, **kw)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"steps": 0}, "steps must be a whole number from 1"),
        ({"cfg": 0.0}, r"cfg must be in \(0, 30\]"),
        ({"fps": 0}, "fps must be from 1 to 60"),
        ({"seed": -1}, "seed must be a whole number from 0"),
        ({"seed": 2**64 - 1}, "seed must be a whole number from 0 to 9223372036854775806"),
        ({"vace_reference_image": "ref.png"}, "is image-to-video: its photo already fixes the character"),
        ({"tea_cache": 2.0}, "tea_cache threshold"),
        ({"height": 100, "width": 64}, "multiples of 16"),
        ({"control_video": "x.mp4"}, "takes no control_video"),
    ],
)
def test_request_fields(photo, kw, message):
    with pytest.raises(InvalidInput, match=message):
        prepare(_config(photo, **kw), embedded())


def test_vace_on_a_model_without_vace(photo, tiny_spec):
    frames = [Image.new("RGB", (64, 64))] * 5
    with pytest.raises(InvalidInput, match="has no VACE branch"):
        prepare(_config(photo, vace_video=frames), tiny_spec)


def test_short_video_is_refused(photo):
    frames = [Image.new("RGB", (64, 64))] * 3
    with pytest.raises(InvalidInput, match="has 3 frames but the request needs 5"):
        prepare(_config(photo, vace_video=frames), embedded())


def test_prepare_fits_image_without_stretching(photo):
    req = prepare(_config(photo, height=64, width=128), embedded())
    assert req.image.size == (128, 64)
    assert (req.height, req.width, req.frames, req.steps) == (64, 128, 5, embedded().default_steps)


def test_lora_ref_parse():
    ref = LoraRef.parse("a/b.safetensors:0.5")
    assert str(ref.path) == "a/b.safetensors" and ref.alpha == 0.5
    ref = LoraRef.parse("c:/x.safetensors")
    assert str(ref.path) == "c:/x.safetensors" and ref.alpha == 1.0


def test_lora_ref_expert_suffix():
    ref = LoraRef.parse("dir/high.safetensors:0.8@high_noise")
    assert (str(ref.path), ref.alpha, ref.expert) == ("dir/high.safetensors", 0.8, "high_noise")
    assert LoraRef.parse("a@b.safetensors").expert == "auto"  # '@' that names no expert stays in the path
    with pytest.raises(ValueError, match="expert must be one of"):
        LoraRef(path="x.safetensors", expert="middle")


@pytest.mark.parametrize("named", ["high_noise", "low_noise", "", None])
def test_a_lora_without_an_expert_goes_where_its_export_says(tmp_path, named):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "lora_expert.safetensors"
    metadata = {"format": "pt"} | ({"wanray.expert": named} if named is not None else {})
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.randn(4, 8)}, str(path), metadata=metadata)
    assert LoraRef.parse(f"{path}:0.8").resolved().expert == (named or "all")  # a full fine-tune's export: ""
    assert LoraRef.parse(f"{path}:0.8@all").resolved().expert == "all"  # what the command line says wins

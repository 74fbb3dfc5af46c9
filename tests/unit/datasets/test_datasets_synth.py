import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wanray.datasets.character import Character
from wanray.datasets.media import read_frames
from wanray.datasets.pose import Placement, skeleton_at
from wanray.datasets.render import anime_background, render_anime_frames, render_photo
from wanray.datasets.synth import SynthConfig, plan_entry, render_entry
from wanray.datasets.validate import prompt_length


def _decoded(root: Path, record: dict) -> dict:
    return {
        "video": np.stack(read_frames(root / record["video"])[0]),
        "pose": np.stack(read_frames(root / record["control_video"])[0]),
        "photo": np.asarray(Image.open(root / record["input_image"])),
    }


def test_same_seed_same_decoded_frames_other_seed_other_frames(tmp_path):
    seed = int(np.random.default_rng().integers(1000))
    small = dict(n=3, height=64, width=64, frames=9)
    a_cfg = SynthConfig(out=tmp_path / "a", seed=seed, **small)
    b_cfg = SynthConfig(out=tmp_path / "b", seed=seed, entries_per_task=1, **{**small, "n": 50})
    c_cfg = SynthConfig(out=tmp_path / "c", seed=seed + 1, **small)
    a = _decoded(a_cfg.out, render_entry(a_cfg, plan_entry(a_cfg, 2)))
    b = _decoded(b_cfg.out, render_entry(b_cfg, plan_entry(b_cfg, 2)))
    c = _decoded(c_cfg.out, render_entry(c_cfg, plan_entry(c_cfg, 2)))
    assert a["video"].shape == (9, 64, 64, 3) and a["pose"].shape == (9, 64, 64, 3) and a["photo"].shape == (64, 64, 3)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["photo"], c["photo"]) and not np.array_equal(a["video"], c["video"])


def test_anime_frame_zero_shows_the_photos_pose_and_placement():
    config = SynthConfig(n=1, out=Path("unused"), seed=int(np.random.default_rng().integers(1000)))
    plan = plan_entry(config, 0)
    pl, sk = plan.placement, skeleton_at(plan.dance, 0.0)
    photo = np.asarray(render_photo(plan.character, sk, pl, plan.layout, np.random.default_rng(1)), dtype=float)
    # the same photo with the character (and its shadow) moved out of the frame: background only, same noise
    away = dataclasses.replace(pl, x_offset=5.0)
    photo_bg = np.asarray(render_photo(plan.character, sk, away, plan.layout, np.random.default_rng(1)), dtype=float)
    anime = np.asarray(render_anime_frames(plan.character, plan.dance, pl, plan.layout, 1, 15)[0], dtype=float)
    anime_bg = anime_background(plan.layout, pl.height, pl.width) * 255
    above_floor = np.arange(pl.height)[:, None] < 0.88 * pl.height  # the ground shadows differ by style
    # Backgrounds are subtracted exactly (same noise), so a low threshold also catches clothes close to the
    # background's colour. At 40 such clothes dropped out of the masks: IoU down to 0.48, centres up to 7.8 px
    # apart, ~7% of seeds failed.
    # Over every seed this test draws (0-999): IoU >= 0.84, centres <= 4.4 px apart.
    photo_mask = (np.abs(photo - photo_bg).max(-1) > 10) & above_floor
    anime_mask = (np.abs(anime - anime_bg).max(-1) > 10) & above_floor
    iou = (photo_mask & anime_mask).sum() / (photo_mask | anime_mask).sum()
    assert iou > 0.75, iou  # the anime head is drawn 12% larger, with outlines
    centre = lambda m: np.argwhere(m).mean(0)  # noqa: E731
    assert np.abs(centre(photo_mask) - centre(anime_mask)).max() < 5  # a placement change moves it >= 6 px


def test_prompts_name_the_attributes_and_dance_and_fit_the_embedded_tokenizer():
    config = SynthConfig(n=300, out=Path("unused"), seed=int(np.random.default_rng().integers(1000)))
    tokens = prompt_length("embedded")
    for i in range(config.n):
        plan = plan_entry(config, i)
        prompt, c = plan.prompt, plan.character
        for word in (c.kind, c.hair_colour, c.hair_style, c.top_colour, c.skin, plan.dance, plan.scene):
            assert word in prompt, (word, prompt)
        assert tokens.count(prompt) <= tokens.max_tokens == 64


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(n=0), "n must be from 1"),
        (dict(height=63), "height must be an even number"),
        (dict(dances=("tango",)), "unknown dance 'tango'"),
        (dict(scenes=("moon",)), "scenes must be some of studio"),
        (dict(fps=0), "fps must be from 1 to 60"),
    ],
)
def test_bad_generator_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**{"n": 5, "out": Path("x"), **kw})


def test_characters_only_wear_what_their_kind_has():
    with pytest.raises(ValueError, match="top 'dress' is not one of t-shirt, hoodie, jacket"):
        Character(
            kind="boy",
            skin="light",
            hair_colour="black",
            hair_style="short",
            top="dress",
            top_colour="red",
            bottom="skirt",
            bottom_colour="red",
            shoes="black",
        )


def test_a_photo_is_not_its_anime_frame():
    """The styles differ where it matters: the photo has sensor noise, the anime frame flat colours."""
    config = SynthConfig(n=1, out=Path("unused"), seed=3)
    plan = plan_entry(config, 0)
    pl = Placement(height=128, width=128)
    photo = np.asarray(
        render_photo(plan.character, skeleton_at(plan.dance, 0), pl, plan.layout, np.random.default_rng(0))
    )
    anime = np.asarray(render_anime_frames(plan.character, plan.dance, pl, plan.layout, 1, 15)[0])
    flat = lambda a: (np.abs(np.diff(a.astype(int), axis=1)).sum(-1) == 0).mean()  # noqa: E731
    assert flat(anime) > 0.6 > 0.2 > flat(photo)

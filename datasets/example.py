"""The demo's example photo (``wanray/assets/example_photo.png``), rendered by the synthetic generator.

    python -m wanray.datasets.example wanray/assets/example_photo.png     # prints the matching prompt

A girl with long brown hair in a red dress, light skin, in the park, at the first pose of the wave
(right arm raised); 256x256, centred, the quick set's photo style.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

EXAMPLE_DANCE = "wave"
EXAMPLE_SCENE = "park"


def example_character():
    from wanray.datasets.character import Character

    return Character(
        kind="girl",
        skin="light",
        hair_colour="brown",
        hair_style="long",
        top="dress",
        top_colour="red",
        bottom="skirt",
        bottom_colour="red",
        shoes="white",
    )


def example_prompt() -> str:
    from wanray.datasets.character import prompt_for

    return prompt_for(example_character(), EXAMPLE_DANCE, EXAMPLE_SCENE)


def _example_rng_and_layout():
    """The photo's random stream, after the scene layout has been drawn from it (the layout comes first)."""
    from wanray.datasets.scenes import sample_layout

    rng = np.random.default_rng([2026, 3])
    return rng, sample_layout(EXAMPLE_SCENE, rng)


def example_layout():
    """The example photo's park layout (the same at any size: layouts are in fractions of the frame)."""
    return _example_rng_and_layout()[1]


def render_example_photo(size: int = 256):
    from wanray.datasets.pose import Placement, skeleton_at
    from wanray.datasets.render import render_photo

    rng, layout = _example_rng_and_layout()
    return render_photo(
        example_character(), skeleton_at(EXAMPLE_DANCE, 0.0), Placement(height=size, width=size), layout, rng
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    render_example_photo().save(Path(argv[0]), format="PNG")
    print(example_prompt())
    return 0


if __name__ == "__main__":
    sys.exit(main())

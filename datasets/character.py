"""Who dances in a synthetic entry: a small discrete set of attributes, and the prompt that names them.

Every attribute is a word or two of ``wanray/assets/tokenizer_corpus.txt`` (the embedded model's
tokenizer was trained on it), so prompts stay short in tokens: the embedded model reads 64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# name -> RGB (0-255). Colours are the words a prompt uses for them.
SKIN = {"light": (241, 204, 178), "medium": (214, 165, 125), "tan": (178, 124, 86), "dark": (112, 72, 48)}
HAIR_COLOURS = {
    "black": (30, 26, 28),
    "brown": (98, 60, 34),
    "blonde": (226, 190, 110),
    "red": (168, 52, 30),
    "silver": (196, 198, 206),
    "pink": (236, 128, 170),
    "blue": (60, 100, 200),
}
CLOTH_COLOURS = {
    "red": (200, 40, 46),
    "orange": (235, 128, 40),
    "yellow": (240, 200, 50),
    "green": (52, 150, 72),
    "blue": (44, 96, 196),
    "purple": (120, 64, 170),
    "pink": (232, 120, 160),
    "white": (236, 236, 232),
    "black": (36, 36, 40),
    "grey": (128, 128, 132),
}
BOTTOM_COLOURS = ("black", "blue", "grey", "white", "brown")
CLOTH_COLOURS["brown"] = (110, 74, 48)
SHOE_COLOURS = {"black": (30, 30, 34), "white": (232, 232, 228), "red": (190, 40, 40)}
KINDS = ("girl", "boy")
HAIR_STYLES = {"girl": ("long", "ponytail", "bob", "twin tails"), "boy": ("short", "spiky", "bob")}
TOPS = {"girl": ("t-shirt", "hoodie", "dress", "jacket"), "boy": ("t-shirt", "hoodie", "jacket")}
BOTTOMS = {"girl": ("trousers", "shorts", "skirt"), "boy": ("trousers", "shorts")}
LONG_SLEEVES = ("hoodie", "jacket")
SCENES = ("studio", "park", "beach", "city")
PLACES = {"studio": "in a studio", "park": "in the park", "beach": "on the beach", "city": "in the city"}


@dataclass(kw_only=True, frozen=True)
class Character:
    kind: str  # girl | boy
    skin: str
    hair_colour: str
    hair_style: str
    top: str  # t-shirt | hoodie | jacket | dress
    top_colour: str
    bottom: str  # trousers | shorts | skirt (unused with a dress)
    bottom_colour: str
    shoes: str

    def __post_init__(self) -> None:
        checks = (
            ("kind", self.kind, KINDS),
            ("skin", self.skin, SKIN),
            ("hair_colour", self.hair_colour, HAIR_COLOURS),
            ("hair_style", self.hair_style, HAIR_STYLES.get(self.kind, ())),
            ("top", self.top, TOPS.get(self.kind, ())),
            ("top_colour", self.top_colour, CLOTH_COLOURS),
            ("bottom", self.bottom, BOTTOMS.get(self.kind, ())),
            ("bottom_colour", self.bottom_colour, CLOTH_COLOURS),
            ("shoes", self.shoes, SHOE_COLOURS),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)} (for a {self.kind})")

    @property
    def long_sleeves(self) -> bool:
        return self.top in LONG_SLEEVES

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def outfit(self) -> str:
        if self.top == "dress":
            return f"{self.top_colour} dress"
        return f"{self.top_colour} {self.top}, {self.bottom_colour} {self.bottom}"


def sample_character(rng: np.random.Generator) -> Character:
    """A character drawn uniformly from the attribute sets (a dress replaces top and bottom)."""
    kind = str(rng.choice(KINDS))
    top = str(rng.choice(TOPS[kind]))
    top_colour = str(rng.choice(list(CLOTH_COLOURS)))
    bottom_colour = str(rng.choice([c for c in BOTTOM_COLOURS if c != top_colour]))
    return Character(
        kind=kind,
        skin=str(rng.choice(list(SKIN))),
        hair_colour=str(rng.choice(list(HAIR_COLOURS))),
        hair_style=str(rng.choice(HAIR_STYLES[kind])),
        top=top,
        top_colour=top_colour,
        bottom=str(rng.choice(BOTTOMS[kind])) if top != "dress" else "skirt",
        bottom_colour=bottom_colour if top != "dress" else top_colour,
        shoes=str(rng.choice(list(SHOE_COLOURS))),
    )


def prompt_for(character: Character, dance: str, scene: str) -> str:
    """E.g. "an anime girl, long black hair, red t-shirt, blue trousers, light skin, dances the wave in the park"."""
    c = character
    place = PLACES.get(scene, f"in {scene}")
    hair = f"{c.hair_style} {c.hair_colour} hair"
    return f"an anime {c.kind}, {hair}, {c.outfit()}, {c.skin} skin, dances the {dance} {place}"

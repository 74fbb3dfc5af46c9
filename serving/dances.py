"""The dances a user can pick on the web page, and the prompt each one stands for.

The names and moves are the synthetic training set's procedural dances (``wanray.datasets.pose.DANCE_NAMES``,
what ``wanray datasets synth`` renders by default), so the shipped model and a LoRA fine-tuned on that set know
them, and the page asks the server (GET /v1/dances) instead of keeping its own list. The held-out dance (``kick``,
for fine-tuning comparisons) is not offered: the shipped model never learned it. The prompt follows the set's wording ("dances the
wave") for the same reason.
"""

from __future__ import annotations

from wanray.datasets.pose import DANCE_NAMES, DANCES
from wanray.inputs import InvalidInput

PROMPT_TEMPLATE = (
    "the same person as an anime character, dances the {name} ({moves}), flat cel shading, clean outlines, "
    "stylised background"
)


def dance_prompt(name: str) -> str:
    if name not in DANCE_NAMES:
        raise InvalidInput(f"unknown dance {name!r}; choose one of {', '.join(DANCE_NAMES)}")
    return PROMPT_TEMPLATE.format(name=name, moves=DANCES[name].description)


def dance_list() -> list[dict[str, str]]:
    return [{"name": name, "prompt": dance_prompt(name)} for name in DANCE_NAMES]

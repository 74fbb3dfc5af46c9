"""The dances a user can pick on the web page, and the prompt each one stands for.

The page asks the server (GET /v1/dances) so the list lives in exactly one place: here. The names are
those of the procedural dances of the synthetic training set (``wanray datasets synth``), so a LoRA
fine-tuned on that set knows them.
"""

from __future__ import annotations

from wanray.inputs import InvalidInput

DANCES: dict[str, str] = {
    "wave": "waving both arms overhead in a flowing wave",
    "twist": "twisting the hips side to side, arms bent at the elbows",
    "robot": "doing the robot with stiff, sharp, mechanical arm moves",
    "jump": "jumping on the spot with arms thrown up",
    "sway": "swaying gently from side to side",
    "march": "marching in place, knees high, arms swinging",
    "spin": "spinning around once with arms out",
}

PROMPT_TEMPLATE = (
    "the same person as an anime character {moves}, flat cel shading, clean outlines, stylised background"
)


def dance_prompt(name: str) -> str:
    try:
        return PROMPT_TEMPLATE.format(moves=DANCES[name])
    except KeyError:
        raise InvalidInput(f"unknown dance {name!r}; choose one of {', '.join(DANCES)}") from None


def dance_list() -> list[dict[str, str]]:
    return [{"name": name, "prompt": dance_prompt(name)} for name in DANCES]

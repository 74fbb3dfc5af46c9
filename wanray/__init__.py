"""wanray: turn a photo of a person into a dancing anime video with Wan I2V models, on Ray.

The core (this package) never imports Ray; ``wanray.datasets``, ``wanray.training``,
``wanray.serving`` and ``wanray.raycluster`` are the Ray applications built on it.
"""

from wanray.config import GenerationConfig, LoraRef, ModelConfig

__all__ = ["GenerationConfig", "LoraRef", "ModelConfig", "WanGenerator", "GenerationResult"]


def __getattr__(name: str):
    # torch and diffsynth load only when generation is actually used (fast `wanray --help`).
    if name in ("WanGenerator", "GenerationResult"):
        from wanray import generation

        return getattr(generation, name)
    raise AttributeError(name)

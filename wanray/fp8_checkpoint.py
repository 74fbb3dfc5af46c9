"""FP8 DiT checkpoints: float8 linear weights with their scales, as the community FP8 releases store them.

Formats read (the key names are the original Wan ones, optionally under ``model.diffusion_model.`` or
``diffusion_model.``):

- ComfyUI / Kijai ``fp8_scaled`` (e.g. ``Wan2_2-I2V-A14B-HIGH_fp8_e4m3fn_scaled_KJ.safetensors``,
  ``wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors``): ``<layer>.weight`` in ``float8_e4m3fn``, its
  ``<layer>.scale_weight`` in float32, a ``scaled_fp8`` marker tensor, sometimes ``<layer>.scale_input``.
- ComfyUI's newer naming: ``<layer>.weight_scale`` (and ``<layer>.input_scale``).
- Plain ``fp8_e4m3fn`` / ``fp8_e5m2`` files: float8 weights with no scale (scale 1).

A scale is a scalar (per tensor), one value per output row (``[out]`` or ``[out, 1]``). Weights are
dequantized at load (``weight * scale``) into the compute dtype; ``--fp8-storage`` keeps the DiT's
linear weights in FP8 in memory again. Input scales belong to FP8 *activation* kernels; this is
weight-only, so they are read, checked and reported, not used.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
WEIGHT_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
INPUT_SCALE_SUFFIXES = (".scale_input", ".input_scale")
MARKER_KEYS = ("scaled_fp8",)
KEY_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def strip_prefix(name: str) -> str:
    for prefix in KEY_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _weight_key(scale_key: str) -> str | None:
    for suffix in WEIGHT_SCALE_SUFFIXES + INPUT_SCALE_SUFFIXES:
        if scale_key.endswith(suffix):
            return scale_key[: -len(suffix)] + ".weight"
    return None


def split_scales(shapes: dict[str, tuple[int, ...]], where: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """The model's own keys (prefix stripped) without the FP8 scale and marker keys; checks each scale.

    Returns (shapes, number of scale keys). Raises ValueError naming a scale with no weight or a bad shape.
    """
    shapes = {strip_prefix(k): v for k, v in shapes.items()}
    model, scales = {}, 0
    for key, shape in shapes.items():
        if key in MARKER_KEYS:
            continue
        weight = _weight_key(key)
        if weight is None:
            model[key] = shape
            continue
        scales += 1
        if weight not in shapes:
            raise ValueError(f"{where}: FP8 scale {key} has no weight {weight}")
        rows = shapes[weight][0]
        if tuple(shape) not in ((), (1,), (rows,), (rows, 1)):
            raise ValueError(f"{where}: FP8 scale {key} has shape {list(shape)}; expected a scalar or one value "
                             f"per output row of {weight} ([{rows}] or [{rows}, 1])")
    return model, scales


def dequantize(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state`` with prefixes stripped, float8 weights times their scales in ``dtype``, scale keys removed."""
    state = {strip_prefix(k): v for k, v in state.items()}
    scales = {_weight_key(k): v for k, v in state.items() if k.endswith(WEIGHT_SCALE_SUFFIXES)}
    input_scales = sum(k.endswith(INPUT_SCALE_SUFFIXES) for k in state)
    out, fp8 = {}, 0
    for key, value in state.items():
        if key in MARKER_KEYS or _weight_key(key) is not None:
            continue
        if key in scales and value.dtype not in FP8_DTYPES:
            raise ValueError(f"{key} has an FP8 scale but is stored as {value.dtype}, not float8")
        if value.dtype in FP8_DTYPES:
            fp8 += 1
            value = value.to(torch.float32)  # [out, in]
            if key in scales:
                value = value * scales[key].to(torch.float32).reshape(-1, *([1] * (value.dim() - 1)))
            value = value.to(dtype)
        out[key] = value
    if fp8:
        log.info("FP8 checkpoint: %d float8 weights (%d with scales) dequantized to %s%s", fp8, len(scales),
                 str(dtype).removeprefix("torch."),
                 f"; {input_scales} input scales not used (weight-only FP8)" if input_scales else "")
    return out

"""A cached row gives the DiT what the pixel path would encode with the run's extra inputs, not everything cached."""

import random

import pytest
import torch

from wanray.training.config import EXTRA_INPUTS
from wanray.training.data import configured_tensors

CACHED = ("input_latents", "context", "y", "clip_feature", "vace_context")  # the cache encodes all the model takes


@pytest.mark.parametrize("extra_inputs, kept", [
    (("input_image",), {"input_latents", "context", "y", "clip_feature"}),  # the embedded VACE model's cache, I2V run
    (("input_image", "vace_video"), set(CACHED)),
    (("vace_reference_image",), {"input_latents", "context", "vace_context"}),
    (("control_video",), {"input_latents", "context", "y"}),
    ((), {"input_latents", "context"}),
])
def test_a_cached_row_keeps_only_what_the_runs_inputs_make(extra_inputs, kept):
    assert set(extra_inputs) <= set(EXTRA_INPUTS)
    tensors = {k: torch.randn(1, random.randint(1, 4)) for k in CACHED}
    out = configured_tensors(tensors, extra_inputs)
    assert set(out) == kept and all(out[k] is tensors[k] for k in kept)

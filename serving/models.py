"""The model side of serving: a replica's generator and the spec the ingress validates requests against."""

from __future__ import annotations

import logging
from pathlib import Path

from wanray.config import ModelConfig
from wanray.specs import NAMED_SPECS, ModelSpec, get_spec, spec_for_dir

log = logging.getLogger(__name__)


def model_spec_for(model: ModelConfig) -> ModelSpec | None:
    """The spec of ``model`` without loading weights; None for a model directory this machine cannot see
    (the generator replicas validate against it instead)."""
    if model.model_spec:
        return get_spec(model.model_spec)
    if model.model in NAMED_SPECS:
        return get_spec(model.model)
    path = Path(model.model).expanduser()
    return spec_for_dir(path) if path.is_dir() else None


def load_generator(model: ModelConfig, parallel) -> object:
    """Load the pipeline one replica serves: the core ``WanGenerator`` on one device, or, for a replica of
    several GPUs, the sequence-parallel engine (xDiT USP) across the GPUs of the replica's placement group."""
    if parallel.world_size == 1:
        from wanray.generation import WanGenerator

        return WanGenerator.load(model)
    try:
        from wanray.usp import load_parallel_generator  # the multi-GPU engine (lead engineer's, GPU hosts)
    except ImportError as e:
        raise NotImplementedError(
            f"a replica of {parallel.world_size} GPUs needs wanray's sequence-parallel engine (wanray.usp), "
            f"which this build does not have ({e}); serve with sequence_parallel 1 and cfg_parallel false"
        ) from e
    return load_parallel_generator(model, parallel)

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
    from dataclasses import replace

    from wanray.serving.parallel_engine import ParallelGenerator

    return ParallelGenerator(replace(model, ulysses_degree=parallel.sequence_parallel,
                                     cfg_degree=2 if parallel.cfg_parallel else 1))

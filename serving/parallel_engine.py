"""A replica's generator across the GPUs of its placement group (xDiT USP + CFG parallel, ``wanray.parallel``).

The replica process is rank 0; ranks 1..N-1 are Ray actors pinned to bundles 1..N-1 of the replica's
STRICT_PACK placement group (one GPU each). Every rank loads the model and runs each request; all end
with the same frames, and rank 0's are returned. Progress comes from rank 0 (this process).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import ray

from wanray.config import GenerationConfig, ModelConfig
from wanray.raycluster.local import free_port

log = logging.getLogger(__name__)


def _rank_env(rank: int, world: int, master: str, port: int) -> dict[str, str]:
    # Ray gives each rank its own GPU as cuda:0 (CUDA_VISIBLE_DEVICES), hence LOCAL_RANK 0 everywhere.
    return {"MASTER_ADDR": master, "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_RANK": "0", "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}


class StoppedByRankZero(Exception):
    """Rank 0 stopped the request between two steps (the job was cancelled, or its lease lost)."""


def step_sync(device, progress=None):
    """The progress callback every rank runs after each denoising step. Rank 0 calls ``progress`` (which raises to
    stop the job) and broadcasts whether the request goes on, so all ranks stop after the same step: a rank that ran
    on would wait in the next step's collective for one that left (until the group's timeout, 10-30 min)."""
    import torch
    import torch.distributed as dist

    def after_step(step: int, steps: int) -> None:
        stop = None
        if progress is not None:
            try:
                progress(step, steps)
            except Exception as e:  # noqa: BLE001 - re-raised below, once the other ranks know
                stop = e
        flag = torch.tensor([int(stop is not None)], dtype=torch.int32, device=device)  # [1]
        dist.broadcast(flag, src=0)
        if stop is not None:
            raise stop
        if flag.item():
            raise StoppedByRankZero()

    return after_step


@ray.remote
class RankWorker:
    """Ranks 1..N-1: the same pipeline, following rank 0 request by request."""

    def __init__(self, model: ModelConfig, env: dict[str, str]):
        os.environ.update(env)
        from wanray.generation import WanGenerator

        self.generator = WanGenerator.load(model)

    def generate(self, config: GenerationConfig) -> bool:
        """Collectives with the other ranks; rank 0 keeps the frames. False when rank 0 stopped the request."""
        try:
            self.generator.generate(config, progress=step_sync(self.generator.device))
        except StoppedByRankZero:
            return False
        return True


class ParallelGenerator:
    """``WanGenerator``'s interface (spec, device, generate) over ``model.ulysses_degree x cfg_degree`` ranks."""

    def __init__(self, model: ModelConfig, *, gpu: bool = True, placement_group=None):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from wanray.generation import WanGenerator

        world = model.ulysses_degree * model.cfg_degree
        master, port = ray.util.get_node_ip_address(), free_port(host="")  # the rendezvous listens on all interfaces
        placement_group = placement_group or ray.util.get_current_placement_group()
        self.workers = []
        for rank in range(1, world):
            options = {"num_gpus": 1} if gpu else {"num_cpus": 1}
            if placement_group is not None:
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=placement_group, placement_group_bundle_index=rank)
            self.workers.append(RankWorker.options(**options).remote(model, _rank_env(rank, world, master, port)))
        os.environ.update(_rank_env(0, world, master, port))
        # rank 0 joins the group while the others do (init_process_group waits for all ranks)
        self.generator = WanGenerator.load(replace(model, device="auto" if gpu else "cpu"))
        self.spec, self.device = self.generator.spec, self.generator.device
        log.info("parallel generator: %d ranks (ulysses %d x cfg %d)", world, model.ulysses_degree, model.cfg_degree)

    def generate(self, config: GenerationConfig, progress=None):
        pending = [w.generate.remote(config) for w in self.workers]
        try:
            return self.generator.generate(config, progress=step_sync(self.device, progress))
        finally:
            ray.get(pending)  # a failed rank surfaces here, with its error

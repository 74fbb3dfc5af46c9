"""The generator deployment: one loaded pipeline per replica, taking jobs from the queue one at a time.

It is a Ray Serve task consumer (``@task_consumer`` is applied in ``app.generator_deployment``, where the
queue's config is known): Serve starts a Celery worker thread in each replica once ``__init__`` has loaded
the model, and calls ``generate_video`` for each message. ``max_ongoing_requests=1`` makes that worker
take one job at a time.

A replica of N GPUs reserves them as one STRICT_PACK placement group (bundle 0 holds this actor); with
``parallel.sequence_parallel > 1`` the loader starts the sequence-parallel engine across those bundles.
The layout is validated before any weight is loaded.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from ray.serve.task_consumer import task_handler

from wanray.serving.config import ServeConfig, check_parallel
from wanray.serving.queue import TASK_NAME

log = logging.getLogger("ray.serve")


def replica_name() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside Serve (tests)
        return f"{socket.gethostname()}-{os.getpid()}"


def visible_gpus() -> int:
    try:
        import ray

        return len(ray.get_gpu_ids())
    except Exception:
        return 0


class VideoGenerator:
    """A replica: model + LoRAs loaded once, jobs run one at a time, liveness published to Redis."""

    def __init__(self, config: ServeConfig, loader=None):
        from wanray.serving.jobs import JobStore
        from wanray.serving.loras import resolve_lora
        from wanray.serving.metrics import ServingMetrics
        from wanray.serving.models import load_generator, model_spec_for
        from wanray.serving.queue import BrokerVisibility
        from wanray.serving.store import VideoStore
        from wanray.serving.worker import JobRunner

        self.config = config
        self.name = replica_name()
        spec = model_spec_for(config.model)
        if config.gpus_per_replica and visible_gpus() < config.gpus_per_replica:
            log.info("replica sees %d GPU(s) of its %d (the others are in its placement group's bundles)",
                     visible_gpus(), config.gpus_per_replica)
        if spec is not None:
            check_parallel(config.parallel, num_heads=spec.dit.num_heads, gpus_per_replica=config.gpus_per_replica)
        if config.few_step_lora:  # a misconfigured server fails here, not in every job
            resolve_lora(config.lora_dir, config.few_step_lora)
        self.generator = (loader or load_generator)(config.model, config.parallel)
        check_parallel(config.parallel, num_heads=self.generator.spec.dit.num_heads,
                       gpus_per_replica=config.gpus_per_replica)
        self.jobs = JobStore.connect(config.redis_url, prefix=config.key_prefix, ttl_s=config.job_ttl_s)
        self.runner = JobRunner(
            jobs=self.jobs, store=VideoStore(config.store_uri), generator=self.generator, worker=self.name,
            lora_dir=config.lora_dir, few_step_lora=config.few_step_lora,
            redelivery_timeout_s=config.redelivery_timeout_s,
            max_attempts=config.max_attempts, metrics=ServingMetrics(),
            visibility_factory=lambda job_id: BrokerVisibility(self.jobs.r, job_id),
        )
        self._alive = threading.Event()
        self._presence = threading.Thread(target=self._publish_presence, daemon=True, name="wanray-presence")
        self._presence.start()
        log.info("generator replica %s ready (%s, %s)", self.name, self.generator.spec.name, self.generator.device)

    def _publish_presence(self, every_s: float = 5.0) -> None:
        while True:
            try:
                self.jobs.worker_alive(self.name)
            except Exception:
                log.warning("could not publish replica liveness", exc_info=True)
            if self._alive.wait(every_s):
                return

    @task_handler(name=TASK_NAME)
    def generate_video(self, job_id: str) -> str:
        return self.runner.run(job_id)

    def check_health(self) -> None:
        """Serve restarts a replica whose queue worker thread died."""
        worker = getattr(getattr(self, "_adapter", None), "_worker_thread", None)
        if worker is not None and not worker.is_alive():
            raise RuntimeError("the replica's queue worker stopped")

    def __del__(self) -> None:
        # Serve stops a replica when its deployment scales down or is redeployed, busy or not (queue jobs are not
        # requests it counts). The Celery worker has been told to stop taking jobs; let the running one finish.
        if hasattr(self, "runner") and not self.runner.idle.wait(self.config.drain_timeout_s):
            log.warning("replica %s stops with a job still running after %.0f s; it will be redelivered",
                        self.name, self.config.drain_timeout_s)
        if hasattr(self, "_alive"):
            self._alive.set()
            try:
                self.jobs.worker_gone(self.name)
            except Exception:
                pass

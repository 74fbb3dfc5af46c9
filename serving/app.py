"""The Serve application: ``VideoAPI`` (FastAPI ingress) + ``VideoGenerator`` (queue consumers).

    serve run wanray.serving.app:build_app model=embedded redis_url=redis://127.0.0.1:6379/0
    serve deploy serving/serve_config.yaml      # the same, with every setting in the YAML's args:
    wanray serve up                             # a local cluster + Redis + this app, prints the URL

``build_app(args)`` is a Serve application builder: ``args`` are ``ServeConfig`` fields. Replica resources,
the placement group of multi-GPU replicas and autoscaling on queue depth all come from that one config.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve.task_consumer import task_consumer

from wanray.serving.config import ServeConfig
from wanray.serving.generator import VideoGenerator
from wanray.serving.queue import task_processor_config

log = logging.getLogger("ray.serve")

GENERATOR_NAME = "VideoGenerator"
INGRESS_NAME = "VideoAPI"


@serve.deployment(name=INGRESS_NAME, max_ongoing_requests=200, health_check_period_s=10)
@serve.ingress()
class VideoAPI:
    """Stateless HTTP ingress: validates, stores the photo, queues the job; every answer comes from Redis."""

    def __init__(self, config: ServeConfig, generator=None):
        from wanray.serving.api import ApiServices, Every, prune_and_log, publish_depth

        self.services = ApiServices.connect(config)
        self.generator = generator  # keeps the consumers in this application's graph; jobs go via the queue
        self.depth_reporter = Every(5.0, lambda: publish_depth(self.services), "wanray-depth", logging.DEBUG)
        self.depth_reporter.start()
        # hourly on each ingress replica: videos go when their job records expire (deletes are idempotent)
        self.janitor = Every(3600.0, lambda: prune_and_log(self.services), "wanray-janitor")
        self.janitor.start()

    def __serve_build_asgi_app__(self):
        from wanray.serving.api import create_api

        return create_api(self.services)


def generator_options(config: ServeConfig) -> dict[str, Any]:
    """Deployment options of the generator: one job per replica, resources, placement group, autoscaling."""
    gpus = config.gpus_per_replica
    options: dict[str, Any] = {
        "name": GENERATOR_NAME,
        "max_ongoing_requests": 1,
        "ray_actor_options": {"num_cpus": config.cpus_per_replica, "num_gpus": 1 if gpus else 0},
        # a stopped replica first waits up to drain_timeout_s for its job (VideoGenerator.__del__), then Celery's
        # shutdown; past this Serve kills it and the job is redelivered
        "graceful_shutdown_timeout_s": max(30.0, config.redelivery_timeout_s, config.drain_timeout_s + 30.0),
        "health_check_period_s": 10,
    }
    if gpus:
        # bundle 0 holds the replica actor, the others the ranks of the sequence-parallel engine
        options["placement_group_bundles"] = [{"CPU": config.cpus_per_replica, "GPU": 1}] + [
            {"CPU": 1, "GPU": 1} for _ in range(gpus - 1)]
        options["placement_group_strategy"] = "STRICT_PACK"
    if config.min_replicas == config.max_replicas:
        options["num_replicas"] = config.min_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": config.min_replicas,
            "initial_replicas": max(config.min_replicas, 1),
            "max_replicas": config.max_replicas,
            "target_ongoing_requests": config.target_jobs_per_replica,
            "upscale_delay_s": config.upscale_delay_s,
            "downscale_delay_s": config.downscale_delay_s,
            "policy": {
                "policy_function": "wanray.serving.autoscaling:QueueDepthPolicy",
                "policy_kwargs": {
                    "redis_url": config.redis_url, "active_key": f"{config.key_prefix}active",
                    "target_jobs_per_replica": config.target_jobs_per_replica,
                    "poll_interval_s": config.autoscaling_poll_s,
                },
            },
        }
    return options


def generator_deployment(config: ServeConfig):
    consumer = task_consumer(task_processor_config=task_processor_config(config))(VideoGenerator)
    return serve.deployment(consumer, **generator_options(config))


def build_app(args: dict[str, Any] | ServeConfig | None) -> serve.Application:
    """Serve application builder (``import_path: wanray.serving.app:build_app``; Serve passes ``args:``)."""
    return build_application(args if isinstance(args, ServeConfig) else ServeConfig.from_args(args))


def build_application(config: ServeConfig, *, loader=None) -> serve.Application:
    """The application from a typed config; ``loader(model, parallel)`` replaces how replicas load the model."""
    generator = generator_deployment(config).bind(config, loader)
    return VideoAPI.options(num_replicas=config.ingress_replicas).bind(config, generator)

"""Autoscaling the generator replicas on queue depth (a Ray Serve custom autoscaling policy).

Serve's own policy counts requests sent through Serve handles; our jobs arrive through the broker, and a
running job holds its replica for minutes. The depth that matters is queued + running jobs, which the job
store keeps exactly (``JobStore.depth``). Serve applies min/max replicas and the up/down-scale delays to
what this returns, so ``min_replicas`` stay warm.

Used from the deployment's ``autoscaling_config.policy`` (see ``app.generator_options``); it runs in the
Serve controller, so it polls Redis in short one-shot tasks and never blocks the controller's loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

log = logging.getLogger("ray.serve")


def desired_replicas(depth: int, target_jobs_per_replica: float) -> int:
    """Replicas for ``depth`` queued + running jobs (min/max bounds are Serve's to apply)."""
    return math.ceil(depth / target_jobs_per_replica) if depth > 0 else 0


class QueueDepthPolicy:
    def __init__(self, redis_url: str, active_key: str, target_jobs_per_replica: float = 1.0,
                 poll_interval_s: float = 1.0):
        self.redis_url = redis_url
        self.active_key = active_key
        self.target = float(target_jobs_per_replica)
        self.poll_interval_s = poll_interval_s
        self.depth = 0
        self._client = None
        self._task: asyncio.Task | None = None
        self._last_poll = 0.0

    async def _poll_once(self) -> None:
        try:
            if self._client is None:
                import redis.asyncio as aioredis

                self._client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
            self.depth = int(await self._client.zcard(self.active_key))
        except Exception as e:  # keep the last known depth; scaling must not crash the controller
            log.warning("wanray autoscaling: could not read the queue depth: %s", e)

    def __call__(self, ctx) -> tuple[float, dict[str, Any]]:
        if self._task is not None and self._task.done():
            self._task = None
        now = time.monotonic()
        if self._task is None and now - self._last_poll >= self.poll_interval_s:
            self._last_poll = now
            self._task = asyncio.get_running_loop().create_task(self._poll_once())
        return desired_replicas(self.depth, self.target), {"queue_depth": self.depth}

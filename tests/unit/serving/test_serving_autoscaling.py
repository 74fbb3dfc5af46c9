"""Autoscaling on queue depth: the policy reads queued + running jobs from Redis without blocking."""

import asyncio
import time

import pytest

from wanray.serving.autoscaling import QueueDepthPolicy, desired_replicas
from wanray.serving.jobs import JobStore, new_job_id


@pytest.mark.parametrize("depth, target, replicas", [(0, 1, 0), (1, 1, 1), (20, 1, 20), (5, 2, 3), (4, 2, 2)])
def test_desired_replicas(depth, target, replicas):
    assert desired_replicas(depth, target) == replicas


def test_policy_follows_the_job_store(serve_config):
    jobs = JobStore.connect(serve_config.redis_url, prefix=serve_config.key_prefix, ttl_s=60)
    policy = QueueDepthPolicy(serve_config.redis_url, jobs.active_key, target_jobs_per_replica=2, poll_interval_s=0)

    async def decide_until(expected, deadline_s=5):
        deadline = time.monotonic() + deadline_s
        while True:
            replicas, state = policy(None)
            if replicas == expected:
                return state
            assert time.monotonic() < deadline, f"policy stuck at {replicas}, wanted {expected}"
            await asyncio.sleep(0.01)

    async def scenario():
        assert (await decide_until(0))["queue_depth"] == 0
        for _ in range(5):
            jobs.admit(new_job_id(), params={}, input_key="", max_queue=100)
        assert (await decide_until(3))["queue_depth"] == 5

    asyncio.run(scenario())


def test_policy_survives_an_unreachable_redis():
    policy = QueueDepthPolicy("redis://127.0.0.1:1/0", "x:active", poll_interval_s=0)

    async def scenario():
        for _ in range(3):
            assert policy(None) == (0, {"queue_depth": 0})
            await asyncio.sleep(0.05)
        if policy._task is not None:
            await policy._task

    asyncio.run(scenario())

"""Shared by the serving benchmarks: a local Ray cluster + redis-server + the serving app, torn down after.

Runs from the repository root (``.venv/bin/python bench/serving_latency.py``); nothing here is imported by
wanray itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
import uuid

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

TINY = {"frames": "5", "steps": "1", "height": "64", "width": "64", "dance": "wave"}


def random_photo() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng().random((80, 96, 3)) * 255).astype("uint8")).save(buf, "PNG")
    return buf.getvalue()


@contextlib.contextmanager
def local_stack(num_cpus: int = 6):
    """(redis, Serve's HTTP port) for the duration of the block: a local cluster with Serve started on it."""
    import ray
    from ray import serve

    from wanray.raycluster.local import free_port, start_head, stop
    from wanray.serving.redis_server import start_redis, stop_redis

    # a SIGTERM (timeout, kill) still runs the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    redis = start_redis()
    cluster = None
    try:
        cluster = start_head(num_cpus=num_cpus)
        ray.init(address=cluster.address, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield redis, port
    finally:
        ray.shutdown()
        if cluster is not None:
            stop(cluster)
        stop_redis(redis)


@contextlib.contextmanager
def deployed(redis_url: str, port: int, store: str, name: str = "bench", **overrides):
    """The app deployed under /<name>; yields its base URL once a generator replica is ready."""
    import httpx
    from ray import serve

    from wanray.serving.app import build_app
    from wanray.serving.config import embedded_cpu

    settings = dict(redis_url=redis_url, queue_name=f"bench-{uuid.uuid4().hex[:8]}", store_uri=store,
                    max_queued_jobs=1000, upscale_delay_s=1.0, downscale_delay_s=900.0)
    settings.update(overrides)
    config = embedded_cpu(**settings)
    serve.run(build_app(config), name=name, route_prefix=f"/{name}", blocking=False)
    base = f"http://127.0.0.1:{port}/{name}/"
    deadline = time.monotonic() + 600
    while True:
        try:
            ready = httpx.get(base + "readyz", timeout=5).json()
            if ready.get("generator_replicas", 0) >= config.min_replicas:
                break
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not become ready")
        time.sleep(1)
    try:
        yield base, config
    finally:
        serve.delete(name)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))

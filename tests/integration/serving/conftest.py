"""The serving app on the session's local Ray cluster, with a real redis-server and the embedded model.

One deployment per module (model loading is the slow part); its settings make a job take seconds and a
lost replica's job move on within ~10 s (redelivery_timeout_s 8).
"""

import io
import json
import time
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

APP_NAME = "wanray-test"
ROUTE_PREFIX = "/wanray"


def serve_http_port(dashboard_url: str) -> int:
    with urllib.request.urlopen(dashboard_url + "/api/serve/applications/", timeout=10) as r:
        return int(json.load(r)["http_options"]["port"])


def wait_until(predicate, deadline_s: float, what: str, every_s: float = 0.5):
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(every_s)


@pytest.fixture(scope="module")
def serving_app(ray_cluster, redis_server, tmp_path_factory):
    """Deploys the app as APP_NAME under ROUTE_PREFIX; yields (base URL, ServeConfig)."""
    import httpx
    from ray import serve

    from wanray.raycluster.local import free_port
    from wanray.serving.app import build_app
    from wanray.serving.config import embedded_cpu

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})  # kept if Serve already runs
    port = serve_http_port(ray_cluster.dashboard_url)
    config = embedded_cpu(
        redis_url=redis_server.url, queue_name=f"it-{uuid.uuid4().hex[:8]}",
        store_uri=str(tmp_path_factory.mktemp("serving-store")), max_queued_jobs=20, redelivery_timeout_s=8.0,
        min_replicas=1, max_replicas=2, upscale_delay_s=1.0, downscale_delay_s=900.0, autoscaling_poll_s=0.5,
        max_steps=60,
    )
    serve.run(build_app(config), name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)
    base = f"http://127.0.0.1:{port}{ROUTE_PREFIX}/"

    def ready():
        try:
            return httpx.get(base + "readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 600, "the serving app to become ready", every_s=1)
        yield base, config
    finally:
        serve.delete(APP_NAME)


@pytest.fixture
def photo_bytes():
    rng = np.random.default_rng()
    buf = io.BytesIO()
    Image.fromarray((rng.random((80, 96, 3)) * 255).astype("uint8")).save(buf, "PNG")
    return buf.getvalue()

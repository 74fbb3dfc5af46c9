"""Fixtures for the serving unit tests: an API test client on the session's real redis-server
(``redis_server`` in tests/conftest.py). No Ray: the ingress code runs in-process through FastAPI's test client."""

import io
import uuid

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def serve_config(redis_server, tmp_path):
    """A config of its own per test: a fresh queue name keeps every Redis key of one test apart."""
    from wanray.serving.config import embedded_cpu

    return embedded_cpu(redis_url=redis_server.url, queue_name=f"t-{uuid.uuid4().hex[:12]}",
                        store_uri=str(tmp_path / "store"), max_queued_jobs=4)


def make_services(config, enqueued=None):
    from wanray.serving.api import ApiServices
    from wanray.serving.jobs import JobStore
    from wanray.serving.models import model_spec_for
    from wanray.serving.queue import TaskQueue
    from wanray.serving.store import VideoStore

    queue = TaskQueue(config)

    def enqueue(job_id):
        queue.enqueue(job_id)
        if enqueued is not None:
            enqueued.append(job_id)

    return ApiServices(config=config, jobs=JobStore.connect(config.redis_url, prefix=config.key_prefix,
                                                            ttl_s=config.job_ttl_s),
                       store=VideoStore(config.store_uri),
                       enqueue=enqueue, spec=model_spec_for(config.model))


@pytest.fixture
def services(serve_config):
    return make_services(serve_config)


@pytest.fixture
def services_for():
    """Services for a config of the test's own (auth on, other limits)."""
    return make_services


@pytest.fixture
def client(services):
    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    with TestClient(create_api(services)) as c:
        yield c


def random_photo(width=96, height=80, fmt="PNG") -> bytes:
    rng = np.random.default_rng()
    buf = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype("uint8")).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def make_photo():
    return random_photo


@pytest.fixture
def photo_bytes():
    return random_photo()

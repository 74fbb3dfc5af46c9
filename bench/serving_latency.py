"""Submit -> queued latency of the video API (POST /v1/videos until its 202), against the proxy's own
round trip (GET /healthz through the same Serve proxy and ingress) measured in the same run.

    .venv/bin/python bench/serving_latency.py [--requests 200] [--concurrency 1,8]

A local Ray cluster, redis-server and the app with the embedded model (one generator replica) are started
and stopped by the script. Each submitted job is cancelled right away, so the generator stays idle and the
numbers are the ingress path: multipart parsing, photo validation, the core's request checks, the photo
write, the atomic admission in Redis and the Celery enqueue.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time

import httpx

from serving_common import TINY, deployed, local_stack, percentile, random_photo


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def run(base: str, requests: int, concurrency: int, photo: bytes) -> tuple[list[float], list[float]]:
    client = httpx.Client(timeout=60)

    def health():
        assert client.get(base + "healthz").status_code == 200

    def submit():
        holder = {}

        def post():
            response = client.post(base + "v1/videos", files={"photo": ("p.png", photo, "image/png")}, data=TINY)
            assert response.status_code == 202, response.text
            holder["id"] = response.json()["id"]

        ms = timed(post)
        client.delete(base + f"v1/videos/{holder['id']}")
        return ms

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for _ in range(10):  # warm-up
            health()
        healthz = list(pool.map(lambda _: timed(health), range(requests)))
        submits = list(pool.map(lambda _: submit(), range(requests)))
    return healthz, submits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8", help="client threads, comma-separated")
    args = parser.parse_args()
    photo = random_photo()
    rows = []
    with local_stack() as (redis, port), tempfile.TemporaryDirectory() as store:
        with deployed(redis.url, port, store, min_replicas=1, max_replicas=1) as (base, _):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                healthz, submits = run(base, args.requests, concurrency, photo)
                rows.append((concurrency, healthz, submits))
    print(f"\nsubmit -> queued latency, {args.requests} requests per row, photo {len(photo):,} bytes (ms)")
    print(f"{'clients':>7} | {'healthz p50':>11} {'p99':>7} | {'submit p50':>10} {'p99':>7} | "
          f"{'p50 ratio':>9} {'p99 ratio':>9}")
    for concurrency, healthz, submits in rows:
        h50, h99, s50, s99 = (percentile(healthz, 50), percentile(healthz, 99), percentile(submits, 50),
                              percentile(submits, 99))
        print(f"{concurrency:>7} | {h50:>11.1f} {h99:>7.1f} | {s50:>10.1f} {s99:>7.1f} | "
              f"{s50 / h50:>9.2f} {s99 / h99:>9.2f}")


if __name__ == "__main__":
    main()

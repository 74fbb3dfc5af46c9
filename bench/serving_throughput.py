"""Jobs per minute through the video API under load on CPU, against the same jobs generated in-process by
``WanGenerator`` one after another (the baseline, measured in the same run).

    .venv/bin/python bench/serving_throughput.py [--jobs 12] [--replicas 1,2]

Each row submits ``--jobs`` tiny jobs (64x64, 5 frames, 1 step) at once to a deployment of fixed replica
count (warm: models loaded before the clock starts) and times until the last video is stored. A ratio above
1 means the service finishes jobs faster than the in-process loop (more replicas), below 1 its overhead. The
baseline is measured before and after the served rows and averaged (the load of a shared machine drifts).
On a 2-core machine two replicas share the same two cores: expect little gain there.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import tempfile
import time

import httpx

from serving_common import TINY, deployed, local_stack, random_photo


def baseline_jobs_per_min(jobs: int) -> float:
    from PIL import Image

    from wanray import GenerationConfig, ModelConfig
    from wanray.generation import WanGenerator
    from wanray.serving.dances import dance_prompt

    generator = WanGenerator.load(ModelConfig(model="embedded", device="cpu"))
    photos = [Image.open(io.BytesIO(random_photo())) for _ in range(jobs)]
    config = dict(prompt=dance_prompt("wave"), height=64, width=64, frames=5, steps=1)
    generator.generate(GenerationConfig(image=photos[0], **config))  # warm-up
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, photo in enumerate(photos):
            generator.generate(GenerationConfig(image=photo, seed=i, **config)).save(f"{tmp}/{i}.mp4")
    return jobs / (time.perf_counter() - started) * 60


def served_jobs_per_min(base: str, jobs: int) -> tuple[float, int]:
    client = httpx.Client(timeout=120)
    photos = [random_photo() for _ in range(jobs)]

    def post(photo):
        response = client.post(base + "v1/videos", files={"photo": ("p.png", photo, "image/png")}, data=TINY)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        ids = list(pool.map(post, photos))
    pending, replicas = set(ids), set()
    while pending:
        for job_id in list(pending):
            view = client.get(base + f"v1/videos/{job_id}").json()
            if view["status"] in ("succeeded", "failed", "cancelled"):
                assert view["status"] == "succeeded", view
                pending.discard(job_id)
                replicas.add(view["replica"])
        time.sleep(0.1)
    return jobs / (time.perf_counter() - started) * 60, len(replicas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--replicas", default="1,2", help="fixed replica counts to measure, comma-separated")
    args = parser.parse_args()
    before = baseline_jobs_per_min(args.jobs)
    rows = []
    with local_stack() as (redis, port):
        for count in (int(r) for r in args.replicas.split(",")):
            with tempfile.TemporaryDirectory() as store, deployed(
                    redis.url, port, store, name=f"bench{count}", min_replicas=count, max_replicas=count) as (base, _):
                rows.append((count, *served_jobs_per_min(base, args.jobs)))
    after = baseline_jobs_per_min(args.jobs)  # again: a shared machine's load drifts during the run
    baseline = (before + after) / 2
    print(f"\njobs/min, {args.jobs} jobs of 64x64x5 frames, 1 step, embedded model on CPU")
    print(f"{'setup':<28} | {'jobs/min':>8} | {'ratio':>5}")
    print(f"{'in-process loop (baseline)':<28} | {baseline:>8.1f} | {1.0:>5.2f}   (before {before:.1f}, after {after:.1f})")
    for count, rate, used in rows:
        label = f"served, {count} replica{'s' if count > 1 else ''} ({used} used)"
        print(f"{label:<28} | {rate:>8.1f} | {rate / baseline:>5.2f}")


if __name__ == "__main__":
    main()

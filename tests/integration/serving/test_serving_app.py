"""The video API on Ray Serve end to end: a local cluster, a real redis-server, the embedded model.

Runs in file order on one deployment: happy path, the web page in headless Chromium, cancel, 20 concurrent
jobs scaling to 2 replicas with a full queue answering 503, the Prometheus metrics, a replica killed
mid-job, an ingress restart. Cancel and kill use 60-step jobs so the job is still running when they act.
"""

import concurrent.futures
import re
import time
import urllib.request

import httpx
import pytest
import ray

from wanray.video import read_video

APP_NAME = "wanray-test"  # as deployed by this folder's conftest

TERMINAL = ("succeeded", "failed", "cancelled")
TINY = {"frames": "5", "steps": "1", "height": "64", "width": "64"}
LONG_STEPS = 60  # conftest allows max_steps 60


def submit(base, photo, **fields):
    data = {"dance": "wave", **TINY, **{k: str(v) for k, v in fields.items()}}
    return httpx.post(base + "v1/videos", files={"photo": ("me.png", photo, "image/png")}, data=data, timeout=60)


def job(base, job_id):
    response = httpx.get(base + f"v1/videos/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(predicate, deadline_s, what, every_s=0.5):
    deadline = time.monotonic() + deadline_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {deadline_s:.0f} s waiting for {what}"
        time.sleep(every_s)
    return value


def wait_for(base, job_id, predicate, deadline_s, what):
    seen = []

    def check():
        view = job(base, job_id)
        seen.append(view)
        return view if predicate(view) else None

    return wait_until(check, deadline_s, f"job {job_id} to be {what} (last: {seen[-1] if seen else None})",
                      every_s=0.2), seen


def replica_actor(replica_id):
    return ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#VideoGenerator#{replica_id}", namespace="serve")


def generator_replicas():
    from ray import serve

    return serve.status().applications[APP_NAME].deployments["VideoGenerator"].replica_states.get("RUNNING", 0)


def test_happy_path(serving_app, photo_bytes, tmp_path):
    base, _ = serving_app
    response = submit(base, photo_bytes, steps=3, seed=11)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert httpx.get(response.headers["location"], timeout=30).json()["id"] == job_id  # under the route prefix
    final, seen = wait_for(base, job_id, lambda v: v["status"] in TERMINAL, 300, "done")
    assert final["status"] == "succeeded", final
    assert final["progress"] == {"step": 3, "steps": 3, "fraction": 1.0}
    assert final["attempt"] == 1 and final["replica"] and final["error"] is None
    assert final["params"]["seed"] == 11 and final["finished_at"] >= final["started_at"] >= final["created_at"]
    statuses = [v["status"] for v in seen]
    assert statuses.index("succeeded") == len(statuses) - 1 and set(statuses) <= {"queued", "running", "succeeded"}
    content = httpx.get(final["content_url"], timeout=60)
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    path = tmp_path / "video.mp4"
    path.write_bytes(content.content)
    frames, fps = read_video(path)
    assert len(frames) == 5 and frames[0].size == (64, 64) and round(fps) == 15


def test_web_page_in_headless_chromium(serving_app, photo_bytes, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, _ = serving_app
    photo = tmp_path / "me.png"
    photo.write_bytes(photo_bytes)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base.rstrip("/"))  # without the slash: the page must still find its files
            expect(page.locator(".chip")).to_have_count(7)
            page.locator(".chip", has_text="robot").click()
            expect(page.locator("#prompt")).to_have_value(re.compile("robot"))
            page.set_input_files("#photo", str(photo))
            page.locator("summary").click()
            for field, value in TINY.items():
                page.fill(f"#{field}", value)
            page.click("#submit")
            expect(page.locator("#status")).to_contain_text(re.compile("Queued|step|Starting|Done"))
            expect(page.locator("#video")).to_be_visible(timeout=300_000)
            expect(page.locator("#status")).to_have_text("Done! Here is your video.")
            expect(page.locator("#cancel")).to_be_hidden()
            expect(page.locator("#error")).to_be_hidden()
            page.wait_for_function("document.getElementById('video').readyState >= 1 && "
                                   "document.getElementById('video').duration > 0", timeout=30_000)
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            page.screenshot(path="/tmp/wanray-serving-page.png", full_page=True)  # for a human to look at
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "download.mp4"
            download.value.save_as(saved)
            assert re.fullmatch(r"wanray-[0-9a-f]{32}\.mp4", download.value.suggested_filename)
            frames, _ = read_video(saved)
            assert len(frames) == 5
            assert errors == []
        finally:
            browser.close()


def test_cancel_a_running_job(serving_app, photo_bytes):
    base, _ = serving_app
    job_id = submit(base, photo_bytes, steps=LONG_STEPS).json()["id"]
    wait_for(base, job_id, lambda v: v["status"] == "running" and v["progress"]["step"] >= 1, 300, "running")
    response = httpx.delete(base + f"v1/videos/{job_id}", timeout=30)
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    final, _ = wait_for(base, job_id, lambda v: v["status"] in TERMINAL, 120, "ended")
    assert final["status"] == "cancelled" and final["error"] == "cancelled by the client"
    assert final["progress"]["step"] < LONG_STEPS
    assert httpx.get(base + f"v1/videos/{job_id}/content", timeout=30).status_code == 409


def test_twenty_concurrent_jobs_scale_to_two_replicas_and_a_full_queue_is_503(serving_app, make_photo):
    base, config = serving_app
    assert config.max_queued_jobs == 20
    # jobs of about a second each, so the 20 queued outlast the start of a second replica (Serve's upscale delay
    # and model loading, 5-11 s): at 2 steps a job took ~0.5 s and the queue could drain first on a fast box
    heavier = {"frames": 9, "steps": 40}
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: submit(base, make_photo(), **heavier), range(20)))
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses if r.status_code != 202]
    ids = [r.json()["id"] for r in responses]
    # while they run the queue is full: more submissions are refused with Retry-After (some may get in as
    # jobs finish; those must finish too)
    refused = None
    for _ in range(20):
        response = submit(base, make_photo(), **heavier)
        if response.status_code == 503:
            refused = response
            break
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    assert refused is not None, "the bounded queue never refused a job"
    assert "queue is full" in refused.json()["error"] and int(refused.headers["retry-after"]) >= 1
    finals = [wait_for(base, i, lambda v: v["status"] in TERMINAL, 900, "done")[0] for i in ids]
    assert [f["status"] for f in finals] == ["succeeded"] * len(ids), [f["error"] for f in finals]
    assert len({f["replica"] for f in finals}) == 2  # both replicas took jobs
    assert generator_replicas() == 2


def test_prometheus_metrics_are_exported(serving_app):
    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"
    wanted = ("wanray_jobs_submitted_total", "wanray_jobs_finished_total", "wanray_job_latency_seconds_count",
              "wanray_queue_depth", "wanray_jobs_rejected_total", "wanray_job_run_seconds_count")

    def total(text, name, label):
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if f"{name}{{" in line and label in line)

    def scraped():  # metrics are flushed periodically: wait until they have caught up with the jobs above
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        if not all(w in text for w in wanted):
            return None
        counts = (total(text, "wanray_jobs_finished_total", 'status="succeeded"'),
                  total(text, "wanray_jobs_finished_total", 'status="cancelled"'),
                  total(text, "wanray_jobs_rejected_total", 'reason="queue_full"'))
        # happy path, page, 20 concurrent (plus extras); the cancelled job; the 503
        return counts if counts[0] >= 22 and counts[1] >= 1 and counts[2] >= 1 else None

    wait_until(scraped, 120, f"{wanted} with the jobs' counts at {url}", every_s=2)


def test_a_replica_killed_mid_job_hands_the_job_to_another(serving_app, photo_bytes):
    base, _ = serving_app
    wait_until(lambda: generator_replicas() == 2, 300, "two generator replicas")
    job_id = submit(base, photo_bytes, steps=LONG_STEPS).json()["id"]
    running, _ = wait_for(base, job_id, lambda v: v["status"] == "running" and v["progress"]["step"] >= 1, 300,
                          "running")
    killed = running["replica"]
    ray.kill(replica_actor(killed), no_restart=True)
    final, seen = wait_for(base, job_id, lambda v: v["status"] in TERMINAL, 600, "done")
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 2 and final["replica"] != killed
    assert final["progress"] == {"step": LONG_STEPS, "steps": LONG_STEPS, "fraction": 1.0}
    assert httpx.get(final["content_url"], timeout=60).status_code == 200


def test_jobs_survive_an_ingress_restart(serving_app, photo_bytes):
    base, _ = serving_app
    job_id = submit(base, photo_bytes, steps=2).json()["id"]
    ingress = [a for a in ray.util.list_named_actors(all_namespaces=True)
               if a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#VideoAPI#")]
    assert len(ingress) == 1
    ray.kill(ray.get_actor(ingress[0]["name"], namespace="serve"), no_restart=True)

    def answered():
        try:
            return httpx.get(base + f"v1/videos/{job_id}", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answered, 300, "the restarted ingress to answer")
    final, _ = wait_for(base, job_id, lambda v: v["status"] in TERMINAL, 300, "done")
    assert final["status"] == "succeeded"


@pytest.fixture
def make_photo():
    import io

    import numpy as np
    from PIL import Image

    def make():
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng().random((80, 96, 3)) * 255).astype("uint8")).save(buf, "PNG")
        return buf.getvalue()

    return make

"""The HTTP API through FastAPI's test client, on a real Redis and the real Celery producer (no Ray):
every bad-input class, backpressure, auth on and off, cancel, content, idempotency."""

import base64
import json
import random
import re

import pytest

from wanray.serving.config import hash_token
from wanray.serving.jobs import JobStatus


def submit(client, photo, **fields):
    data = {"dance": "wave", "frames": "5", "steps": "1", **{k: str(v) for k, v in fields.items()}}
    return client.post("/v1/videos", files={"photo": ("me.png", photo, "image/png")}, data=data)


def assert_clean_error(response, status, *needles):
    """The status, an {"error": ...} body that says what to change, and nothing of the server's insides."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    message = body["error"]
    for needle in needles:
        assert needle.lower() in message.lower(), message
    for leak in ("Traceback", "/work/", "/tmp/", "site-packages", ".py", "File \""):
        assert leak not in message, message
    return message


def queue_length(services):
    return services.jobs.r.llen(services.config.queue_name)


def test_submit_queues_a_job_with_every_default_filled_in(client, services, photo_bytes):
    response = submit(client, photo_bytes, seed=7)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["queue_position"] == 0 and job["attempt"] == 0
    assert response.headers["location"] == f"http://testserver/v1/videos/{job['id']}"
    params = job["params"]
    assert (params["height"], params["width"], params["frames"], params["steps"], params["seed"]) == (64, 64, 5, 1, 7)
    assert "dances the wave" in params["prompt"] and params["dance"] == "wave"
    # the photo is in the store and the job id is on the broker's queue
    assert services.store.get_bytes(f"inputs/{job['id']}") == photo_bytes
    assert queue_length(services) == 1
    raw = json.loads(services.jobs.r.lindex(services.config.queue_name, 0))
    assert raw["headers"]["id"] == job["id"] and raw["headers"]["task"] == "wanray.generate_video"
    again = client.get(f"/v1/videos/{job['id']}").json()
    assert again["status"] == "queued" and again["params"] == params


def test_json_body_with_base64_photo_and_a_prompt(client, photo_bytes):
    body = {"image_base64": base64.b64encode(photo_bytes).decode(), "prompt": "a knight dancing", "frames": 9,
            "steps": 2, "height": 48, "width": 80}
    response = client.post("/v1/videos", json=body)
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert params["prompt"] == "a knight dancing" and params["dance"] is None
    assert (params["height"], params["width"], params["frames"], params["steps"]) == (48, 80, 9, 2)
    # a data: URL as browsers produce it works too
    body["image_base64"] = "data:image/png;base64," + body["image_base64"]
    assert client.post("/v1/videos", json=body).status_code == 202
    # and base64 wrapped in lines, as GNU base64 and base64.encodebytes write it
    body["image_base64"] = base64.encodebytes(photo_bytes).decode()
    assert "\n" in body["image_base64"] and client.post("/v1/videos", json=body).status_code == 202


@pytest.mark.parametrize("fields, status, needles", [
    ({"frames": 6}, 422, ["4n+1", "5 or 9"]),
    ({"height": 70}, 422, ["multiples of 16"]),
    ({"frames": 41}, 422, ["at most 33"]),  # the operator's limit (embedded_cpu: max_frames 33)
    ({"steps": 0}, 422, ["steps"]),
    ({"steps": 99}, 422, ["at most 20"]),
    ({"cfg": 100}, 422, ["cfg"]),
    ({"fps": 500}, 422, ["fps"]),
    ({"seed": -1}, 422, ["seed"]),
    ({"frames": "many"}, 422, ["frames", "integer"]),
    ({"dance": "moonwalk"}, 422, ["unknown dance", "wave"]),
    ({"dance": "", "prompt": ""}, 422, ["prompt", "dance"]),
    ({"lora": "../../etc/passwd"}, 422, ["lora name"]),
    ({"lora": "anime"}, 422, ["no loras"]),
    ({"frame": 5}, 422, ["frame", "unknown field"]),
    ({"prompt": "x" * 2001}, 422, ["prompt"]),
])
def test_bad_values_are_422_with_what_to_fix(client, services, photo_bytes, fields, status, needles):
    assert_clean_error(submit(client, photo_bytes, **fields), status, *needles)
    assert services.jobs.depth() == 0 and queue_length(services) == 0  # nothing was queued


def test_bad_photos(client, services, make_photo):
    assert_clean_error(submit(client, b"GIF89a not really"), 422, "could not be read as an image")
    assert_clean_error(submit(client, make_photo(width=12, height=40)), 422, "at least 16 pixels")
    tiff = make_photo(fmt="TIFF")
    assert_clean_error(submit(client, tiff), 422, "TIFF", "JPEG, PNG")
    # the photo part's declared type
    response = client.post("/v1/videos", files={"photo": ("me.txt", b"hello", "text/plain")}, data={"dance": "wave"})
    assert_clean_error(response, 415, "photo must be a JPEG")
    # no photo at all
    response = client.post("/v1/videos", files={"other": ("x.png", make_photo(), "image/png")}, data={"dance": "wave"})
    assert_clean_error(response, 422, "photo")
    assert services.jobs.depth() == 0


def test_photos_are_decoded_a_few_at_a_time(client, photo_bytes, monkeypatch):
    import wanray.serving.api as api

    real, free_while_decoding = api.open_image_checked, []

    def decode(data, what):
        free_while_decoding.append(api.DECODE_SLOTS._value)  # the slots left while this one decodes
        return real(data, what)

    monkeypatch.setattr(api, "open_image_checked", decode)
    assert submit(client, photo_bytes).status_code == 202
    assert free_while_decoding == [3] and api.DECODE_SLOTS._value == 4  # one of 4 held, then given back


def test_malformed_bodies_are_400_and_wrong_types_415(client, photo_bytes):
    assert_clean_error(client.post("/v1/videos", content=b"{not json", headers={"content-type": "application/json"}),
                       400, "not valid JSON")
    assert_clean_error(client.post("/v1/videos", json=["a list"]), 400, "object")
    assert_clean_error(client.post("/v1/videos", json={"image_base64": "@@@", "dance": "wave"}), 400, "base64")
    nested = b"[" * random.randint(100_000, 200_000)
    assert_clean_error(client.post("/v1/videos", content=nested, headers={"content-type": "application/json"}),
                       400, "nested too deeply")
    assert_clean_error(client.post("/v1/videos", json={"dance": "wave"}), 422, "image_base64")
    assert_clean_error(client.post("/v1/videos", content=b"--xx\r\ngarbage",
                                   headers={"content-type": "multipart/form-data; boundary=xx"}), 422, "photo")
    assert_clean_error(client.post("/v1/videos", content=photo_bytes, headers={"content-type": "image/png"}),
                       415, "multipart/form-data", "application/json")
    assert_clean_error(client.post("/v1/videos", content=b"x"), 415)


def test_upload_limit_is_413(services_for, serve_config, make_photo):
    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    services = services_for(serve_config.replace(max_upload_bytes=20_000))
    client = TestClient(create_api(services))
    big = make_photo(width=400, height=300)  # random pixels: ~360 kB of PNG
    assert len(big) > 20_000
    message = assert_clean_error(submit(client, big), 413, "limit is 20,000")
    assert "smaller" in message
    # a body sent without Content-Length is counted while it streams
    def chunks():
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]
    response = client.post("/v1/videos", content=chunks(), headers={"content-type": "application/json"})
    assert_clean_error(response, 413)
    assert services.jobs.depth() == 0


def test_full_queue_is_503_with_retry_after_and_accepted_jobs_are_kept(client, services, make_photo):
    limit = services.config.max_queued_jobs
    accepted = [submit(client, make_photo()) for _ in range(limit)]
    assert [r.status_code for r in accepted] == [202] * limit
    refused = submit(client, make_photo())
    assert_clean_error(refused, 503, "queue is full", f"limit is {limit}")
    assert int(refused.headers["retry-after"]) == services.config.retry_after_s
    # the accepted jobs are untouched: queued, in order, each once on the broker
    ids = [r.json()["id"] for r in accepted]
    views = [client.get(f"/v1/videos/{i}").json() for i in ids]
    assert [v["status"] for v in views] == ["queued"] * limit
    assert [v["queue_position"] for v in views] == list(range(limit))
    assert queue_length(services) == limit and services.jobs.depth() == limit
    # after a job has finished, Retry-After is the mean job time; cancelling one frees a place
    services.jobs.record_job_seconds(12.3)
    assert submit(client, make_photo()).headers["retry-after"] == "13"
    assert client.delete(f"/v1/videos/{ids[0]}").status_code == 202
    assert submit(client, make_photo()).status_code == 202


def test_cancel_a_queued_job(client, services, photo_bytes):
    job_id = submit(client, photo_bytes).json()["id"]
    response = client.delete(f"/v1/videos/{job_id}")
    assert response.status_code == 202
    view = response.json()
    assert view["status"] == "cancelled" and view["error"] == "cancelled by the client"
    assert not services.store.exists(f"inputs/{job_id}")
    assert services.jobs.depth() == 0
    assert_clean_error(client.delete(f"/v1/videos/{job_id}"), 409, "already cancelled")
    assert_clean_error(client.get(f"/v1/videos/{job_id}/content"), 409, "cancelled")


def test_cancel_a_running_job_asks_it_to_stop(client, services, photo_bytes):
    job_id = submit(client, photo_bytes).json()["id"]
    assert services.jobs.claim(job_id, token="t", worker="w", lease_s=30, max_attempts=3) == ("run", "1")
    view = client.delete(f"/v1/videos/{job_id}").json()
    assert view["status"] == "running" and view["cancel_requested"] is True
    assert services.jobs.heartbeat(job_id, token="t", lease_s=30, step=1, steps=4) == "cancel"


def test_status_progress_eta_and_content(client, services, photo_bytes, tmp_path):
    job_id = submit(client, photo_bytes, steps=4).json()["id"]
    services.jobs.record_job_seconds(8.0)
    assert client.get(f"/v1/videos/{job_id}").json()["eta_seconds"] == 8.0  # first in line, no replica yet
    services.jobs.claim(job_id, token="t", worker="replica-a", lease_s=30, max_attempts=3)
    services.jobs.heartbeat(job_id, token="t", lease_s=30, step=1, steps=4)
    view = client.get(f"/v1/videos/{job_id}").json()
    assert view["status"] == "running" and view["progress"] == {"step": 1, "steps": 4, "fraction": 0.25}
    assert view["replica"] == "replica-a" and view["eta_seconds"] is not None and view["eta_seconds"] >= 0
    assert_clean_error(client.get(f"/v1/videos/{job_id}/content"), 409, "still running")
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256))
    services.store.put_bytes(f"videos/{job_id}.mp4", video)
    assert services.jobs.finish(job_id, token="t", status=JobStatus.succeeded, video_key=f"videos/{job_id}.mp4") == "ok"
    view = client.get(f"/v1/videos/{job_id}").json()
    assert view["status"] == "succeeded" and view["progress"]["fraction"] == 1.0
    assert view["content_url"].endswith(f"v1/videos/{job_id}/content")
    content = client.get(f"/v1/videos/{job_id}/content")
    assert content.status_code == 200 and content.content == video
    assert content.headers["content-type"] == "video/mp4"
    assert f"wanray-{job_id}.mp4" in content.headers["content-disposition"]


@pytest.mark.parametrize("kind", ["folder", "fsspec"])
def test_a_video_gone_from_the_store_is_404_not_an_empty_200(services_for, serve_config, photo_bytes, kind):
    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    memory = f"memory://wanray-{random.getrandbits(64):x}"
    config = serve_config if kind == "folder" else serve_config.replace(store_uri=memory)
    services = services_for(config)
    client = TestClient(create_api(services))
    job_id = submit(client, photo_bytes).json()["id"]
    services.jobs.claim(job_id, token="t", worker="replica-a", lease_s=30, max_attempts=3)
    video = random.randbytes(3000)
    services.store.put_bytes(f"videos/{job_id}.mp4", video)
    assert services.jobs.finish(job_id, token="t", status=JobStatus.succeeded, video_key=f"videos/{job_id}.mp4") == "ok"
    assert client.get(f"/v1/videos/{job_id}/content").content == video  # streamed from fsspec, sent from the folder
    services.store.delete(f"videos/{job_id}.mp4")
    assert_clean_error(client.get(f"/v1/videos/{job_id}/content"), 404, "no longer in the store")


def test_videos_and_photos_go_once_their_job_records_have_expired(services_for, serve_config, photo_bytes):
    import time

    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api, prune_orphans
    from wanray.serving.jobs import new_job_id

    services = services_for(serve_config.replace(store_uri=f"memory://wanray-{random.getrandbits(64):x}"))
    client = TestClient(create_api(services))
    live = submit(client, photo_bytes).json()["id"]  # its photo is in the store and its record in Redis
    services.store.put_bytes(f"videos/{live}.mp4", b"kept")
    expired = [new_job_id() for _ in range(random.randint(1, 4))]  # records gone: Redis let them expire
    for job_id in expired:
        services.store.put_bytes(f"videos/{job_id}.mp4", random.randbytes(64))
        services.store.put_bytes(f"inputs/{job_id}", random.randbytes(64))
    services.store.put_bytes("videos/README.txt", b"not ours")
    assert prune_orphans(services) == 0  # all younger than the grace (a photo is stored before its record)
    assert prune_orphans(services, now=time.time() + 2 * 3600) == 2 * len(expired)
    left = sorted(key for prefix in ("videos", "inputs") for key, _ in services.store.objects(prefix))
    assert left == sorted([f"inputs/{live}", f"videos/{live}.mp4", "videos/README.txt"])
    assert client.get(f"/v1/videos/{live}").json()["status"] == "queued"


def test_unknown_jobs_are_404(client):
    for path in ("/v1/videos/0123456789abcdef0123456789abcdef", "/v1/videos/x/content", "/v1/videos/..%2E"):
        assert_clean_error(client.get(path), 404, "no job")
    assert_clean_error(client.get("/v1/videos/..%2F..%2Fetc%2Fpasswd"), 404, "no such path")
    assert_clean_error(client.put("/v1/videos"), 405)
    assert_clean_error(client.delete("/v1/videos/0123456789abcdef0123456789abcdef"), 404)


def test_idempotency_key_returns_the_same_job(client, services, photo_bytes, make_photo):
    first = submit_with_key(client, photo_bytes, "order-17")
    second = submit_with_key(client, photo_bytes, "order-17")
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert queue_length(services) == 1 and services.jobs.depth() == 1
    # the same key on another request is a mistake, not a retry: refused, naming the job the key belongs to
    other_photo = submit_with_key(client, make_photo(width=48, height=48), "order-17")
    assert_clean_error(other_photo, 422, "already used for a different request", first.json()["id"])
    other_dance = client.post("/v1/videos", files={"photo": ("me.png", photo_bytes, "image/png")},
                              data={"dance": "wave", "frames": "5", "steps": "1"},
                              headers={"Idempotency-Key": "order-17"})
    assert_clean_error(other_dance, 422, "different request")
    assert queue_length(services) == 1 and services.jobs.depth() == 1
    assert submit_with_key(client, photo_bytes, "order-18").json()["id"] != first.json()["id"]
    assert_clean_error(submit_with_key(client, photo_bytes, "x" * 200), 422, "Idempotency-Key")


def test_a_retry_after_the_broker_was_down_makes_a_new_job_under_the_same_key(services, photo_bytes):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    broker_up = False
    real_enqueue = services.enqueue

    def enqueue(job_id):
        if not broker_up:
            raise ConnectionError("broker down")
        real_enqueue(job_id)

    client = TestClient(create_api(replace(services, enqueue=enqueue)))
    key = f"order-{random.randrange(10**6)}"
    assert_clean_error(submit_with_key(client, photo_bytes, key), 503, "unreachable", "try again")
    assert services.jobs.depth() == 0 and queue_length(services) == 0
    broker_up = True
    retry = submit_with_key(client, photo_bytes, key)
    assert retry.status_code == 202 and retry.json()["status"] == "queued", retry.text
    again = submit_with_key(client, photo_bytes, key)  # from now on the key names the queued job
    assert again.status_code == 200 and again.json()["id"] == retry.json()["id"] and queue_length(services) == 1


def submit_with_key(client, photo, key):
    return client.post("/v1/videos", files={"photo": ("me.png", photo, "image/png")},
                       data={"dance": "jump", "frames": "5", "steps": "1"}, headers={"Idempotency-Key": key})


def test_auth_on(services_for, serve_config, photo_bytes):
    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    token = "s3cret-token-of-the-test-" + serve_config.queue_name
    client = TestClient(create_api(services_for(serve_config.replace(auth_token_sha256=hash_token(token)))))
    for method, path in (("get", "/v1/dances"), ("get", "/v1/loras"), ("post", "/v1/videos"),
                         ("get", "/v1/videos/0123456789abcdef0123456789abcdef")):
        response = getattr(client, method)(path)
        assert_clean_error(response, 401, "bearer token")
        assert response.headers["www-authenticate"] == "Bearer"
    wrong = client.get("/v1/dances", headers={"Authorization": "Bearer not-the-token"})
    assert_clean_error(wrong, 401, "not valid")
    good = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/dances", headers=good).status_code == 200
    # a token read from a file with its newline hashes to the same: the header's token is stripped too
    assert hash_token(token + "\n") == hash_token(token)
    response = client.post("/v1/videos", files={"photo": ("me.png", photo_bytes, "image/png")},
                           data={"dance": "wave", "frames": "5", "steps": "1"}, headers=good)
    assert response.status_code == 202
    assert client.get(f"/v1/videos/{response.json()['id']}", headers=good).json()["status"] == "queued"
    # health, the page and the docs stay open
    for path in ("/healthz", "/", "/docs", "/openapi.json", "/static/app.js"):
        assert client.get(path).status_code == 200, path


def test_auth_off_needs_no_header(client):
    assert client.get("/v1/dances").status_code == 200


def test_dances_page_docs_and_health(client, services):
    from wanray.datasets.pose import DANCE_NAMES

    dances = client.get("/v1/dances").json()
    assert [d["name"] for d in dances] == list(DANCE_NAMES)  # the synthetic set's dances, listed in one place
    assert all(f"dances the {d['name']} (" in d["prompt"] for d in dances)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="photo"' in page.text and "static/app.js" in page.text
    assert re.search(r'fetch|api\("v1/dances"\)', client.get("/static/app.js").text)
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/videos"]["post"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"202", "413", "415", "422", "503"} <= set(post["responses"])
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["generator_replicas"] == 0  # no generator replica alive
    services.jobs.worker_alive("replica-a")
    assert client.get("/readyz").json() == {"redis": True, "generator_replicas": 1, "queue_depth": 0}


def test_loras_are_listed_and_accepted_by_name(services_for, serve_config, tmp_path, photo_bytes):
    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    lora_dir = tmp_path / "loras"
    lora_dir.mkdir()
    (lora_dir / "anime-v1.safetensors").write_bytes(b"x")
    client = TestClient(create_api(services_for(serve_config.replace(lora_dir=str(lora_dir)))))
    assert client.get("/v1/loras").json() == ["anime-v1"]
    response = submit(client, photo_bytes, lora="anime-v1", lora_alpha=0.7)
    assert response.status_code == 202 and response.json()["params"]["lora"] == "anime-v1"
    message = assert_clean_error(submit(client, photo_bytes, lora="ghibli"), 422, "unknown LoRA", "anime-v1")
    assert str(lora_dir) not in message


def test_a_few_step_server_defaults_to_4_steps_without_cfg(services_for, serve_config, tmp_path, photo_bytes):
    from fastapi.testclient import TestClient

    from wanray.serving.api import create_api

    lora_dir = tmp_path / "loras"
    lora_dir.mkdir()
    (lora_dir / "distill-4step.safetensors").write_bytes(b"x")
    # a default_steps kept from the plain model's YAML (the GPU one says 50) does not apply to the 4-step LoRA
    config = serve_config.replace(lora_dir=str(lora_dir), few_step_lora="distill-4step",
                                  default_steps=random.choice([12, 20, 50]))
    client = TestClient(create_api(services_for(config)))
    data = {"dance": "wave", "frames": "5"}
    response = client.post("/v1/videos", files={"photo": ("me.png", photo_bytes, "image/png")}, data=data)
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert (params["steps"], params["cfg"]) == (4, 1.0)
    # what a request says still counts
    params = submit(client, photo_bytes, steps=2, cfg=2.5).json()["params"]
    assert (params["steps"], params["cfg"]) == (2, 2.5)
    with pytest.raises(ValueError, match="few_step_lora 'distill-4step' is a name in lora_dir; set lora_dir"):
        serve_config.replace(few_step_lora="distill-4step")

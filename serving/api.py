"""The HTTP API (FastAPI), independent of Ray: ``create_api(services)`` is what the Serve ingress serves and
what the unit tests call through a test client.

    POST   /v1/videos                 photo + parameters -> 202 {id, status: queued, ...}
    GET    /v1/videos/{id}            status, progress (step i of n), ETA, error
    GET    /v1/videos/{id}/content    the mp4
    DELETE /v1/videos/{id}            cancel
    GET    /v1/dances | /v1/loras     what a request may name
    GET    /healthz | /readyz         liveness | Redis reachable and a generator replica alive
    GET    /                          the web page;  /docs  the OpenAPI docs
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from wanray.config import DEFAULT_FPS, DEFAULT_FRAMES, GenerationConfig
from wanray.inputs import InvalidInput, open_image_checked, prepare
from wanray.sampling import FEW_STEPS
from wanray.serving import dances
from wanray.serving.config import ServeConfig
from wanray.serving.errors import Conflict, NotFound, Unauthorized, Unavailable, install_error_handlers
from wanray.serving.jobs import JobRecord, JobStatus, JobStore, is_job_id, new_job_id
from wanray.serving.loras import list_loras, resolve_lora
from wanray.serving.metrics import ServingMetrics
from wanray.serving.protocol import DanceInfo, ErrorBody, JobView, Progress, VideoJSONRequest, VideoParams
from wanray.serving.store import VideoStore, input_key
from wanray.serving.uploads import parse_video_request
from wanray.specs import ModelSpec

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_IDEMPOTENCY_KEY = 128


@dataclass(kw_only=True)
class ApiServices:
    """What the routes need; built once per ingress replica (``connect``) or by a test."""

    config: ServeConfig
    jobs: JobStore
    store: VideoStore
    enqueue: Callable[[str], None]
    spec: ModelSpec | None
    metrics: ServingMetrics = field(default_factory=lambda: ServingMetrics(enabled=False))
    worker_heartbeat_s: float = 5.0

    @classmethod
    def connect(cls, config: ServeConfig, *, metrics: ServingMetrics | None = None) -> "ApiServices":
        from wanray.serving.models import model_spec_for
        from wanray.serving.queue import TaskQueue

        queue = TaskQueue(config)
        return cls(config=config, jobs=JobStore.connect(config.redis_url, prefix=config.key_prefix,
                                                        ttl_s=config.job_ttl_s),
                   store=VideoStore(config.store_uri), enqueue=queue.enqueue, spec=model_spec_for(config.model),
                   metrics=metrics or ServingMetrics())


# -- request -> job parameters --


# Photos decoded at once per ingress replica. The upload limit bounds bytes, not pixels: a flat 40 MP PNG is ~130 kB
# and decodes to 120-160 MB, so 40 request threads decoding together could take ~6 GB; 4 at a time keep it < 0.7 GB.
DECODE_SLOTS = threading.BoundedSemaphore(4)


def job_params(params: VideoParams, image_bytes: bytes, services: ApiServices) -> dict:
    """Validate a request completely (as the generator will) and fill in every default."""
    config, spec = services.config, services.spec
    with DECODE_SLOTS:
        image = open_image_checked(image_bytes, "photo")
    if params.prompt and params.prompt.strip():
        prompt = params.prompt.strip()
        if params.dance:
            dances.dance_prompt(params.dance)  # still a known dance
    elif params.dance:
        prompt = dances.dance_prompt(params.dance)
    else:
        raise InvalidInput("give a prompt, or choose a dance (GET /v1/dances lists them)")
    height = _first(params.height, config.default_height, spec.default_height if spec else None)
    width = _first(params.width, config.default_width, spec.default_width if spec else None)
    few_step = config.few_step_lora is not None
    # the distillation LoRA fixes the step count: it wins over a default_steps the YAML kept for the plain model
    steps = _first(params.steps, FEW_STEPS if few_step else None, config.default_steps,
                   spec.default_steps if spec else None)
    cfg = _first(params.cfg, 1.0 if few_step else None)
    frames = _first(params.frames, config.default_frames, DEFAULT_FRAMES)
    if height is None or width is None or steps is None:
        raise InvalidInput("give height, width and steps (this server's model has no defaults it can see)")
    _check_limits(config, height=height, width=width, frames=frames, steps=steps)
    seed = params.seed if params.seed is not None else random.randrange(2**31)
    if params.lora:
        resolve_lora(config.lora_dir, params.lora)
    out = dict(prompt=prompt, dance=params.dance, negative_prompt=params.negative_prompt, height=height, width=width,
               frames=frames, fps=_first(params.fps, DEFAULT_FPS), steps=steps, cfg=cfg, seed=seed,
               lora=params.lora, lora_alpha=params.lora_alpha)
    if spec is not None:  # every remaining check of the core (sizes, 4n+1 frames, cfg, ...), before queueing
        prepare(GenerationConfig(image=image, prompt=prompt, height=height, width=width, frames=frames,
                                 fps=out["fps"], steps=steps, cfg=cfg, seed=seed), spec)
    return out


def _first(*values):
    """The first value given (0 counts as given: it is refused later, never replaced by a default)."""
    return next((v for v in values if v is not None), None)


def _check_limits(config: ServeConfig, *, height: int, width: int, frames: int, steps: int) -> None:
    if max(height, width) > config.max_side:
        raise InvalidInput(f"height and width must be at most {config.max_side} on this server, got {height}x{width}")
    if frames > config.max_frames:
        raise InvalidInput(f"frames must be at most {config.max_frames} on this server, got {frames}")
    if steps > config.max_steps:
        raise InvalidInput(f"steps must be at most {config.max_steps} on this server, got {steps}")


# -- job record -> what the client sees --


def job_view(record: JobRecord, services: ApiServices, base: str = "") -> JobView:
    now = time.time()
    eta, position = None, None
    mean = services.jobs.mean_job_seconds()
    if record.status == JobStatus.running:
        if record.step > 0 and record.started_at:
            per_step = (now - record.started_at) / record.step
            eta = per_step * (record.steps - record.step)
        elif mean is not None and record.started_at:
            eta = max(0.0, mean - (now - record.started_at))
    elif record.status == JobStatus.queued:
        position = services.jobs.jobs_ahead(record)
        if mean is not None:
            workers = max(1, services.jobs.live_workers(3 * services.worker_heartbeat_s))
            eta = (math.floor(position / workers) + 1) * mean
    steps = record.steps or record.params.get("steps", 0)
    done = record.status == JobStatus.succeeded
    step = steps if done else record.step
    return JobView(
        id=record.id, status=record.status,
        progress=Progress(step=step, steps=steps, fraction=round(step / steps, 4) if steps else 0.0),
        eta_seconds=round(eta, 1) if eta is not None else None, queue_position=position,
        error=record.error or None, cancel_requested=record.cancel_requested, attempt=record.attempt,
        replica=record.worker or None,
        created_at=record.created_at, started_at=record.started_at, finished_at=record.finished_at,
        params=record.params, content_url=f"{base}v1/videos/{record.id}/content" if done else None,
    )


# -- the app --


def create_api(services: ApiServices) -> FastAPI:
    config = services.config
    app = FastAPI(
        title="wanray video API",
        description="Photo -> dancing anime video (Wan image-to-video). Submit a job, poll it, download the mp4. "
                    "Errors are {\"error\": \"...\"} with what to change.",
        version="1",
    )
    install_error_handlers(app)
    errors = {s: {"model": ErrorBody} for s in (400, 401, 404, 409, 413, 415, 422, 503)}

    def authorized(request: Request) -> None:
        if config.auth_token_sha256 is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("this API needs a bearer token: send 'Authorization: Bearer <token>'")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        if not hmac.compare_digest(digest, config.auth_token_sha256):
            raise Unauthorized("the bearer token is not valid")

    def existing(job_id: str) -> JobRecord:
        record = services.jobs.get(job_id) if is_job_id(job_id) else None
        if record is None:
            raise NotFound(f"no job {job_id[:40]!r} (job records are kept {config.job_ttl_s // 3600} h after they end)")
        return record

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        workers = services.jobs.live_workers(3 * services.worker_heartbeat_s)
        body = {"redis": True, "generator_replicas": workers, "queue_depth": services.jobs.depth()}
        return JSONResponse(body, status_code=200 if workers > 0 else 503)

    v1 = [Depends(authorized)]

    @app.get("/v1/dances", response_model=list[DanceInfo], dependencies=v1, tags=["videos"])
    def get_dances():
        return dances.dance_list()

    @app.get("/v1/loras", response_model=list[str], dependencies=v1, tags=["videos"])
    def get_loras():
        return list_loras(config.lora_dir)

    @app.post(
        "/v1/videos", status_code=202, response_model=JobView, dependencies=v1, tags=["videos"], responses=errors,
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["photo"], "properties": {
                "photo": {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP or BMP"},
                **VideoParams.model_json_schema()["properties"]}}},
            "application/json": {"schema": VideoJSONRequest.model_json_schema()},
        }}},
    )
    async def submit(request: Request):
        """Submit a photo and what to make of it. Optional header ``Idempotency-Key``: a retried POST with the
        same key returns the same job instead of making a second one; the key on a different request is a 422."""
        params, image_bytes = await parse_video_request(request, config.max_upload_bytes)
        idem = request.headers.get("idempotency-key")
        if idem is not None and not (0 < len(idem) <= MAX_IDEMPOTENCY_KEY and idem.isprintable()):
            raise InvalidInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
        run_params = await run_in_threadpool(job_params, params, image_bytes, services)
        sent = hashlib.sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode() + image_bytes)
        view, created = await run_in_threadpool(_admit, services, run_params, image_bytes, idem,
                                                str(request.base_url), sent.hexdigest())
        return JSONResponse(view.model_dump(mode="json"), status_code=202 if created else 200,
                            headers={"Location": f"{request.base_url}v1/videos/{view.id}"})

    @app.get("/v1/videos/{job_id}", response_model=JobView, dependencies=v1, tags=["videos"], responses=errors)
    def status(job_id: str, request: Request):
        return job_view(existing(job_id), services, str(request.base_url))

    @app.get("/v1/videos/{job_id}/content", dependencies=v1, tags=["videos"], responses=errors,
             response_class=FileResponse)
    def content(job_id: str):
        record = existing(job_id)
        if record.status != JobStatus.succeeded:
            hint = {"queued": "it is still queued", "running": "it is still running",
                    "failed": "it failed: " + record.error, "cancelled": "it was cancelled"}[record.status.value]
            raise Conflict(f"job {job_id} has no video: {hint}")
        filename = f"wanray-{job_id}.mp4"
        local = services.store.local_path(record.video_key)
        if not (local.is_file() if local is not None else services.store.exists(record.video_key)):
            # checked before streaming: once a 200's headers are out, a missing object can only end it empty
            raise NotFound(f"the video of job {job_id} is no longer in the store")
        if local is not None:
            return FileResponse(local, media_type="video/mp4", filename=filename)
        return StreamingResponse(services.store.iter_bytes(record.video_key), media_type="video/mp4",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @app.delete("/v1/videos/{job_id}", status_code=202, response_model=JobView, dependencies=v1, tags=["videos"],
                responses=errors)
    def cancel(job_id: str, request: Request):
        """Cancel a job: a queued one at once, a running one at its next denoising step."""
        existing(job_id)
        outcome = services.jobs.cancel(job_id)
        record = existing(job_id)
        if outcome == "cancelled_now":
            services.store.delete(record.input_key)
            services.metrics.finished("cancelled")
        elif outcome != "cancelling":
            raise Conflict(f"job {job_id} already {outcome}; nothing to cancel")
        return job_view(record, services, str(request.base_url))

    return app


def _admit(services: ApiServices, params: dict, image_bytes: bytes, idem: str | None,
           base: str, request_sha: str) -> tuple[JobView, bool]:
    """Store the photo, take a place in the bounded queue, hand the job to the broker."""
    config, jobs = services.config, services.jobs
    job_id = new_job_id()
    key = input_key(job_id)
    services.store.put_bytes(key, image_bytes)  # before the job exists, so no replica can miss it
    admission = jobs.admit(job_id, params=params, input_key=key, max_queue=config.max_queued_jobs,
                           idempotency_key=idem, request_sha=request_sha)
    if admission.outcome != "ok":
        services.store.delete(key)
    if admission.outcome == "exists":
        if jobs.request_sha_of(admission.job_id) not in ("", request_sha):  # a key reused, not a retry
            raise InvalidInput(f"Idempotency-Key {idem!r} was already used for a different request (job "
                               f"{admission.job_id}); send a new key for a new request")
        return job_view(jobs.get(admission.job_id), services, base), False
    if admission.outcome == "full":
        services.metrics.rejected("queue_full")
        retry = math.ceil(jobs.mean_job_seconds() or config.retry_after_s)
        raise Unavailable(f"the queue is full ({admission.depth} jobs queued or running, the limit is "
                          f"{config.max_queued_jobs}); try again in about {retry} s", {"Retry-After": str(retry)})
    try:
        services.enqueue(job_id)
    except Exception:
        log.exception("could not enqueue job %s", job_id)
        jobs.fail_unqueued(job_id, "the job queue was unreachable; submit again", idem)
        services.store.delete(key)
        services.metrics.rejected("broker_unreachable")
        raise Unavailable("the job queue is unreachable right now; try again shortly", {"Retry-After": "10"})
    services.metrics.submitted()
    return job_view(jobs.get(job_id), services, base), True


def prune_orphans(services: ApiServices, *, grace_s: float = 3600.0, now: float | None = None) -> int:
    """Delete the store's videos and photos whose job record is gone (it expired ``job_ttl_s`` after the job ended,
    or the job was never recorded), once they are ``grace_s`` old: a photo is stored just before its job is
    recorded. No answer can reach them any more. Files not named by a job id are left alone. Returns the count."""
    now = time.time() if now is None else now
    deleted = 0
    for prefix, suffix in (("videos", ".mp4"), ("inputs", "")):
        for key, modified in list(services.store.objects(prefix)):
            job_id = key.rsplit("/", 1)[-1].removesuffix(suffix)
            if is_job_id(job_id) and now - modified > grace_s and services.jobs.get(job_id) is None:
                services.store.delete(key)
                deleted += 1
    return deleted


def prune_and_log(services: ApiServices) -> None:
    if deleted := prune_orphans(services):
        log.info("store: deleted %d videos and photos whose jobs have expired", deleted)


def publish_depth(services: ApiServices) -> None:
    """The queue depth gauge (published on a timer, so scrapes see it even when nobody submits)."""
    counts = services.jobs.active_counts()
    services.metrics.queue_depth(counts["queued"], counts["running"])


class Every(threading.Thread):
    """A daemon thread running ``task`` every ``every_s`` seconds until ``stop_event`` is set; a run that fails is
    logged at ``failure_level`` and the next one tries again."""

    def __init__(self, every_s: float, task: Callable[[], None], name: str, failure_level: int = logging.WARNING):
        super().__init__(daemon=True, name=name)
        self.every_s, self.task, self.failure_level = every_s, task, failure_level
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every_s):
            try:
                self.task()
            except Exception:
                log.log(self.failure_level, "%s failed; trying again in %.0f s", self.name, self.every_s,
                        exc_info=True)

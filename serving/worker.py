"""One job on a generator replica: claim it, generate with progress per step, store the video, end it.

Independent of Ray (the Serve deployment in ``generator.py`` calls ``JobRunner.run``), so its state
machine is tested with real Redis and the embedded model alone. Every path ends the job with a status and,
for failures, a reason a user can act on; only an unreachable Redis escapes (Celery then retries the
message later).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
import uuid
from pathlib import Path

from wanray.config import GenerationConfig, LoraRef
from wanray.inputs import InvalidInput, open_image_checked
from wanray.sampling import few_step
from wanray.serving.jobs import JobRecord, JobStatus, JobStore
from wanray.serving.loras import resolve_lora
from wanray.serving.metrics import ServingMetrics
from wanray.serving.store import VideoStore, video_key

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The client cancelled the job while it ran (raised from the progress callback, between steps)."""


class LeaseLost(Exception):
    """Another replica owns the job now (this one was presumed dead); stop without touching it."""


def generation_config(record: JobRecord, image, lora_dir: str | None, *, few_step_lora: str | None = None,
                      spec=None) -> GenerationConfig:
    """The core's GenerationConfig for a stored job (the ingress already validated and filled it in).

    On a few-step server (``few_step_lora``) the job also gets that LoRA, first, and the sampler and shift of
    ``few_step`` for ``spec``; its steps and cfg are the ones the ingress stored.
    """
    p = record.params
    loras = ()
    if few_step_lora:
        loras = (LoraRef(path=resolve_lora(lora_dir, few_step_lora)),)
    if p.get("lora"):
        loras += (LoraRef(path=resolve_lora(lora_dir, p["lora"]), alpha=float(p.get("lora_alpha", 1.0))),)
    kwargs = dict(image=image, prompt=p["prompt"], seed=int(p["seed"]), height=p["height"], width=p["width"],
                  frames=p["frames"], fps=p["fps"], steps=p["steps"], cfg=p.get("cfg"), loras=loras)
    if p.get("negative_prompt"):
        kwargs["negative_prompt"] = p["negative_prompt"]
    config = GenerationConfig(**kwargs)
    if few_step_lora:
        tuned = few_step(config, spec)
        config = dataclasses.replace(config, sampler=tuned.sampler, sigma_shift=tuned.sigma_shift)
    return config


class _Heartbeat(threading.Thread):
    """Renews the job's lease and the broker message's visibility while the job runs."""

    def __init__(self, runner: "JobRunner", job_id: str, token: str, visibility):
        super().__init__(daemon=True, name=f"heartbeat-{job_id[:8]}")
        self.runner, self.job_id, self.token, self.visibility = runner, job_id, token, visibility
        self.stop_event = threading.Event()
        self.state = "ok"  # ok | cancel | lost

    def run(self) -> None:
        while not self.stop_event.wait(self.runner.heartbeat_s):
            try:
                self.state = self.runner.jobs.heartbeat(self.job_id, token=self.token, lease_s=self.runner.lease_s)
                if self.visibility is not None:
                    self.visibility.extend()
            except Exception:  # Redis hiccup: the next beat retries; the lease outlives a few misses
                log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)


class JobRunner:
    def __init__(self, *, jobs: JobStore, store: VideoStore, generator, worker: str, lora_dir: str | None,
                 redelivery_timeout_s: float, max_attempts: int, metrics: ServingMetrics | None = None,
                 visibility_factory=None, few_step_lora: str | None = None):
        self.jobs, self.store, self.generator = jobs, store, generator
        self.worker, self.lora_dir, self.max_attempts = worker, lora_dir, max_attempts
        self.few_step_lora = few_step_lora
        # The lease runs out well before the broker redelivers, so the next replica finds it free.
        self.lease_s = redelivery_timeout_s / 2
        self.heartbeat_s = max(0.2, self.lease_s / 4)
        self.metrics = metrics or ServingMetrics(enabled=False)
        self.visibility_factory = visibility_factory  # job_id -> BrokerVisibility, or None
        self.idle = threading.Event()  # clear while a delivery runs: a stopping replica waits for it
        self.idle.set()

    def run(self, job_id: str) -> str:
        """Run one delivery of a job; returns the job's final status (or 'lost' / 'missing')."""
        self.idle.clear()
        try:
            return self._run(job_id)
        finally:
            self.idle.set()

    def _run(self, job_id: str) -> str:
        token = uuid.uuid4().hex
        while True:
            outcome, value = self.jobs.claim(job_id, token=token, worker=self.worker, lease_s=self.lease_s,
                                             max_attempts=self.max_attempts)
            if outcome == "run":
                break
            if outcome == "busy":  # a redelivery while its replica still heart-beats: wait for it
                time.sleep(min(1.0, self.heartbeat_s))
                continue
            if outcome in ("done", "ended"):
                log.info("job %s is %s; delivery acknowledged", job_id, value)
                if outcome == "ended":
                    self.metrics.finished(value, reason="replica_lost")
                record = self.jobs.get(job_id)
                self._drop_input(job_id, record.input_key if record else "")
            return value if outcome in ("done", "ended") else "missing"
        log.info("job %s: attempt %s on %s", job_id, value, self.worker)
        visibility = self.visibility_factory(job_id) if self.visibility_factory else None
        heartbeat = _Heartbeat(self, job_id, token, visibility)
        heartbeat.start()
        try:
            return self._generate(job_id, token, heartbeat)
        finally:
            heartbeat.stop_event.set()

    def _generate(self, job_id: str, token: str, heartbeat: _Heartbeat) -> str:
        record = self.jobs.get(job_id)
        self.metrics.started(time.time() - record.created_at)
        started = time.perf_counter()

        def progress(step: int, steps: int) -> None:
            state = self.jobs.heartbeat(job_id, token=token, lease_s=self.lease_s, step=step, steps=steps)
            if state == "cancel" or heartbeat.state == "cancel":
                raise JobCancelled()
            if state == "lost":
                raise LeaseLost()

        status, error, reason, fields = JobStatus.failed, "", "error", {}
        try:
            try:
                photo = self.store.get_bytes(record.input_key)
            except FileNotFoundError:
                raise InvalidInput("the uploaded photo is no longer in the store; submit the job again") from None
            image = open_image_checked(photo, "photo")
            config = generation_config(record, image, self.lora_dir, few_step_lora=self.few_step_lora,
                                       spec=self.generator.spec if self.few_step_lora else None)
            result = self.generator.generate(config, progress=progress)
            if heartbeat.state == "cancel":
                raise JobCancelled()
            with tempfile.TemporaryDirectory(prefix="wanray-job-") as tmp:
                local = result.save(Path(tmp) / "video.mp4")
                self.store.put_file(local, video_key(job_id))
            status, fields = JobStatus.succeeded, {"video_key": video_key(job_id)}
        except JobCancelled:
            status, error = JobStatus.cancelled, "cancelled by the client"
        except LeaseLost:
            log.warning("job %s was taken over by another replica; leaving it", job_id)
            return "lost"
        except InvalidInput as e:
            error, reason = str(e), "invalid_input"
        except Exception as e:
            if _is_redis_error(e):
                raise  # the job stays claimed; its lease runs out and the redelivered message retries it
            log.exception("job %s failed", job_id)
            error = (f"generation failed on the server ({type(e).__name__}); the job id is in the server log. "
                     f"Try again, or with a smaller size or fewer frames")
            reason = type(e).__name__
        run_s = time.perf_counter() - started
        fields["run_seconds"] = f"{run_s:.3f}"
        outcome = self.jobs.finish(job_id, token=token, status=status, error=error, **fields)
        if outcome != "ok":
            log.warning("job %s: finishing as %s refused (%s)", job_id, status.value, outcome)
            return outcome
        if status == JobStatus.succeeded:
            self.jobs.record_job_seconds(run_s)
        self.metrics.finished(status.value, latency_s=time.time() - record.created_at, run_s=run_s, reason=reason)
        self._drop_input(job_id, record.input_key)
        log.info("job %s %s in %.1f s %s", job_id, status.value, run_s, error)
        return status.value

    def _drop_input(self, job_id: str, input_key: str) -> None:
        """A job that ended no longer needs its photo."""
        try:
            if input_key:
                self.store.delete(input_key)
        except Exception:
            log.warning("could not delete the photo of job %s", job_id, exc_info=True)


def _is_redis_error(e: Exception) -> bool:
    import redis

    return isinstance(e, redis.RedisError)

"""Prometheus metrics of the video API, exported through Ray's metrics agent (``ray.util.metrics``).

Ray prefixes every name with ``ray_``: scrape ``ray_wanray_queue_depth`` etc. from each node's metrics
export port (the dashboard's Prometheus service discovery lists them). Created lazily, inside the replica
that records them; without Ray (unit tests of the API) every call is a no-op.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

JOB_SECONDS_BOUNDARIES = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600]


class ServingMetrics:
    def __init__(self, enabled: bool = True):
        self._m = {}
        if not enabled:
            return
        try:
            import ray
            from ray.util.metrics import Counter, Gauge, Histogram
        except ImportError:
            return
        if not ray.is_initialized():
            return
        self._m = {
            "depth": Gauge("wanray_queue_depth", description="jobs queued or running", tag_keys=("state",)),
            "submitted": Counter("wanray_jobs_submitted_total", description="jobs accepted (HTTP 202)"),
            "rejected": Counter("wanray_jobs_rejected_total", description="submissions refused",
                                tag_keys=("reason",)),
            "finished": Counter("wanray_jobs_finished_total", description="jobs ended", tag_keys=("status",)),
            "failures": Counter("wanray_job_failures_total", description="jobs failed", tag_keys=("reason",)),
            "latency": Histogram("wanray_job_latency_seconds", description="submit -> video ready",
                                 boundaries=JOB_SECONDS_BOUNDARIES),
            "run": Histogram("wanray_job_run_seconds", description="generation time of a job on a replica",
                             boundaries=JOB_SECONDS_BOUNDARIES),
            "queue_wait": Histogram("wanray_job_queue_wait_seconds", description="submit -> a replica starts it",
                                    boundaries=JOB_SECONDS_BOUNDARIES),
        }

    def queue_depth(self, queued: int, running: int) -> None:
        if self._m:
            self._m["depth"].set(queued, tags={"state": "queued"})
            self._m["depth"].set(running, tags={"state": "running"})

    def submitted(self) -> None:
        if self._m:
            self._m["submitted"].inc()

    def rejected(self, reason: str) -> None:
        if self._m:
            self._m["rejected"].inc(tags={"reason": reason})

    def started(self, waited_s: float) -> None:
        if self._m:
            self._m["queue_wait"].observe(max(0.0, waited_s))

    def finished(self, status: str, *, latency_s: float | None = None, run_s: float | None = None,
                 reason: str = "") -> None:
        if not self._m:
            return
        self._m["finished"].inc(tags={"status": status})
        if status == "failed":
            self._m["failures"].inc(tags={"reason": reason or "error"})
        if status == "succeeded" and latency_s is not None:
            self._m["latency"].observe(latency_s)
        if run_s is not None:
            self._m["run"].observe(run_s)

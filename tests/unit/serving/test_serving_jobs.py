"""The job state machine in Redis: bounded admission, leases, redelivery, attempts, cancel, finish."""

import time

import pytest

from wanray.serving.jobs import JobStatus, JobStore, new_job_id


@pytest.fixture
def jobs(serve_config):
    return JobStore.connect(serve_config.redis_url, prefix=serve_config.key_prefix, ttl_s=60)


def admit(jobs, max_queue=3, **kw):
    job_id = new_job_id()
    return job_id, jobs.admit(job_id, params={"steps": 2}, input_key=f"inputs/{job_id}", max_queue=max_queue, **kw)


def test_admission_is_bounded_and_counts_queued_plus_running(jobs):
    ids = [admit(jobs)[0] for _ in range(3)]
    assert jobs.depth() == 3
    job_id, refused = admit(jobs)
    assert refused.outcome == "full" and refused.depth == 3 and jobs.get(job_id) is None
    assert jobs.claim(ids[0], token="a", worker="w", lease_s=30, max_attempts=3) == ("run", "1")
    assert admit(jobs)[1].outcome == "full"  # running jobs still take a place
    assert jobs.active_counts() == {"queued": 2, "running": 1}
    assert jobs.finish(ids[0], token="a", status=JobStatus.succeeded) == "ok"
    assert admit(jobs)[1].outcome == "ok"
    assert jobs.jobs_ahead(jobs.get(ids[2])) == 1


def test_finished_records_expire_active_ones_never(jobs):
    job_id, _ = admit(jobs)
    assert jobs.r.ttl(jobs.job_key(job_id)) == -1
    jobs.claim(job_id, token="a", worker="w", lease_s=30, max_attempts=3)
    assert jobs.r.ttl(jobs.job_key(job_id)) == -1
    jobs.finish(job_id, token="a", status=JobStatus.failed, error="boom")
    assert 0 < jobs.r.ttl(jobs.job_key(job_id)) <= 60
    record = jobs.get(job_id)
    assert record.status == JobStatus.failed and record.error == "boom" and record.finished_at >= record.started_at


def test_a_live_lease_makes_a_redelivery_wait_and_an_expired_one_hands_over(jobs):
    job_id, _ = admit(jobs)
    assert jobs.claim(job_id, token="a", worker="wa", lease_s=0.3, max_attempts=3) == ("run", "1")
    assert jobs.claim(job_id, token="b", worker="wb", lease_s=0.3, max_attempts=3) == ("busy", "a")
    assert jobs.heartbeat(job_id, token="a", lease_s=0.3, step=1, steps=2) == "ok"
    deadline = time.monotonic() + 5
    while (outcome := jobs.claim(job_id, token="b", worker="wb", lease_s=30, max_attempts=3))[0] == "busy":
        assert time.monotonic() < deadline, "the lease of a silent worker never expired"
        time.sleep(0.05)
    assert outcome == ("run", "2")
    record = jobs.get(job_id)
    assert record.worker == "wb" and record.attempt == 2 and record.step == 0
    # the presumed-dead worker comes back: it cannot touch the job any more
    assert jobs.heartbeat(job_id, token="a", lease_s=30, step=2, steps=2) == "lost"
    assert jobs.finish(job_id, token="a", status=JobStatus.succeeded) == "lost"
    assert jobs.finish(job_id, token="b", status=JobStatus.succeeded, video_key="v") == "ok"
    assert jobs.get(job_id).video_key == "v"


def test_a_finished_job_is_not_run_again(jobs):
    job_id, _ = admit(jobs)
    jobs.claim(job_id, token="a", worker="w", lease_s=30, max_attempts=3)
    jobs.finish(job_id, token="a", status=JobStatus.succeeded)
    assert jobs.claim(job_id, token="b", worker="w2", lease_s=30, max_attempts=3) == ("done", "succeeded")
    assert jobs.claim(new_job_id(), token="b", worker="w2", lease_s=30, max_attempts=3) == ("missing", "")


def test_too_many_attempts_fail_the_job_with_a_reason(jobs):
    job_id, _ = admit(jobs)
    for attempt in (1, 2):
        assert jobs.claim(job_id, token=f"t{attempt}", worker="w", lease_s=30, max_attempts=2) == ("run", str(attempt))
        jobs.r.delete(jobs.lease_key(job_id))  # the replica died: its lease is gone
    assert jobs.claim(job_id, token="t3", worker="w", lease_s=30, max_attempts=2) == ("ended", "failed")
    record = jobs.get(job_id)
    assert record.status == JobStatus.failed and "2 times" in record.error and jobs.depth() == 0


def test_cancel(jobs):
    queued, _ = admit(jobs)
    assert jobs.cancel(queued) == "cancelled_now"
    assert jobs.get(queued).status == JobStatus.cancelled and jobs.depth() == 0
    assert jobs.cancel(queued) == "cancelled"
    # a redelivered message of a cancelled job does not run it
    assert jobs.claim(queued, token="a", worker="w", lease_s=30, max_attempts=3) == ("done", "cancelled")
    running, _ = admit(jobs)
    jobs.claim(running, token="a", worker="w", lease_s=30, max_attempts=3)
    assert jobs.cancel(running) == "cancelling"
    assert jobs.heartbeat(running, token="a", lease_s=30) == "cancel"
    assert jobs.finish(running, token="a", status=JobStatus.cancelled, error="cancelled by the client") == "ok"
    assert jobs.cancel(new_job_id()) == "missing"
    # a job whose replica died after the cancel request ends as cancelled on redelivery
    orphan, _ = admit(jobs)
    jobs.claim(orphan, token="a", worker="w", lease_s=30, max_attempts=3)
    jobs.cancel(orphan)
    jobs.r.delete(jobs.lease_key(orphan))
    assert jobs.claim(orphan, token="b", worker="w", lease_s=30, max_attempts=3) == ("ended", "cancelled")


def test_idempotency_key(jobs):
    first_id, first = admit(jobs, idempotency_key="k1")
    _, second = admit(jobs, idempotency_key="k1")
    assert first.outcome == "ok" and second.outcome == "exists" and second.job_id == first_id
    assert jobs.depth() == 1


def test_worker_liveness_and_mean_job_time(jobs):
    assert jobs.live_workers(5) == 0
    jobs.worker_alive("a")
    jobs.worker_alive("b")
    assert jobs.live_workers(5) == 2
    jobs.worker_gone("a")
    assert jobs.live_workers(5) == 1
    assert jobs.mean_job_seconds() is None
    jobs.record_job_seconds(10)
    jobs.record_job_seconds(20)
    assert jobs.mean_job_seconds() == pytest.approx(12.0)

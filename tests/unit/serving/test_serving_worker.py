"""A generator replica's job lifecycle with the embedded model and real Redis (no Ray): success with a
real mp4, cancel mid-run, bad input, a crash inside generation, redelivery, the lease kept alive."""

import time

import pytest
import torch

from wanray.serving.jobs import JobStatus, JobStore, new_job_id
from wanray.serving.store import VideoStore, input_key, video_key
from wanray.serving.worker import JobRunner
from wanray.video import read_video


@pytest.fixture
def jobs(serve_config):
    return JobStore.connect(serve_config.redis_url, prefix=serve_config.key_prefix, ttl_s=60)


@pytest.fixture
def store(serve_config):
    return VideoStore(serve_config.store_uri)


def new_job(jobs, store, photo, **params):
    job_id = new_job_id()
    store.put_bytes(input_key(job_id), photo)
    full = dict(prompt="an anime girl dancing", negative_prompt=None, height=64, width=64, frames=5, fps=15, steps=1,
                cfg=None, seed=3, lora=None, lora_alpha=1.0)
    full.update(params)
    assert jobs.admit(job_id, params=full, input_key=input_key(job_id), max_queue=10).outcome == "ok"
    return job_id


def runner(jobs, store, generator, **kw):
    options = dict(worker="replica-test", lora_dir=None, redelivery_timeout_s=4.0, max_attempts=3)
    options.update(kw)
    return JobRunner(jobs=jobs, store=store, generator=generator, **options)


class Spy:
    """Wraps the real generator: counts calls and can act at a given denoising step."""

    def __init__(self, generator, at_step=None, action=None):
        self.generator, self.at_step, self.action, self.calls, self.steps_seen = generator, at_step, action, 0, []

    @property
    def spec(self):
        return self.generator.spec

    @property
    def device(self):
        return self.generator.device

    def generate(self, config, progress=None):
        self.calls += 1

        def hook(i, n):
            self.steps_seen.append((i, n))
            if i == self.at_step:
                self.action()
            progress(i, n)

        return self.generator.generate(config, progress=hook)


def wait_for_lease_renewals(jobs, job_id, count=2, deadline_s=30):
    """Block (as a long denoising step would) until the heartbeat thread has renewed the lease ``count`` times."""
    renewals, last = 0, jobs.r.pttl(jobs.lease_key(job_id))
    deadline = time.monotonic() + deadline_s
    while renewals < count:
        assert time.monotonic() < deadline, "the lease was not renewed while the job ran"
        ttl = jobs.r.pttl(jobs.lease_key(job_id))
        assert ttl > 0, "the lease ran out while the job was running"
        renewals += ttl > last
        last = ttl
        time.sleep(0.02)


def test_a_job_runs_to_a_real_video_keeping_its_lease(jobs, store, embedded_generator, photo_bytes):
    job_id = new_job(jobs, store, photo_bytes, steps=2, frames=5, height=48, width=64)
    stolen = []

    def long_step():  # a step far longer than the 0.5 s lease: the heartbeat must keep the job ours
        wait_for_lease_renewals(jobs, job_id)
        stolen.append(jobs.claim(job_id, token="thief", worker="other", lease_s=30, max_attempts=3)[0])

    spy = Spy(embedded_generator, at_step=1, action=long_step)
    first = runner(jobs, store, spy, redelivery_timeout_s=1.0)
    assert first.lease_s == 0.5
    assert first.run(job_id) == "succeeded"
    assert stolen == ["busy"]
    record = jobs.get(job_id)
    assert record.status == JobStatus.succeeded and record.attempt == 1 and record.error == ""
    assert (record.step, record.steps) == (2, 2) and spy.steps_seen == [(1, 2), (2, 2)]
    assert record.video_key == video_key(job_id) and record.run_seconds > 0
    frames, fps = read_video(store.local_path(record.video_key))
    assert len(frames) == 5 and frames[0].size == (64, 48) and round(fps) == 15
    assert not store.exists(input_key(job_id))  # the photo is dropped once the job ended
    assert jobs.depth() == 0 and jobs.mean_job_seconds() == pytest.approx(record.run_seconds, rel=1e-3)
    assert jobs.r.exists(jobs.lease_key(job_id)) == 0
    # a redelivered message of this job is acknowledged without generating again
    assert runner(jobs, store, spy).run(job_id) == "succeeded" and spy.calls == 1


def test_cancel_while_running_stops_at_the_next_step(jobs, store, embedded_generator, photo_bytes):
    job_id = new_job(jobs, store, photo_bytes, steps=2)
    spy = Spy(embedded_generator, at_step=1, action=lambda: jobs.cancel(job_id))
    assert runner(jobs, store, spy).run(job_id) == "cancelled"
    record = jobs.get(job_id)
    assert record.status == JobStatus.cancelled and record.error == "cancelled by the client"
    assert spy.steps_seen == [(1, 2)] and not store.exists(video_key(job_id)) and jobs.depth() == 0


def test_bad_input_fails_with_the_core_message(jobs, store, embedded_generator, photo_bytes, tmp_path):
    job_id = new_job(jobs, store, photo_bytes, frames=6)  # got past no ingress: the core still refuses it
    assert runner(jobs, store, embedded_generator).run(job_id) == "failed"
    assert "4n+1" in jobs.get(job_id).error
    (tmp_path / "loras").mkdir()
    job_id = new_job(jobs, store, photo_bytes, lora="gone")
    assert runner(jobs, store, embedded_generator, lora_dir=str(tmp_path / "loras")).run(job_id) == "failed"
    assert jobs.get(job_id).error.startswith("unknown LoRA 'gone'")


def test_a_crash_inside_generation_fails_the_job_without_leaking_details(jobs, store, embedded_generator, photo_bytes):
    def explode():
        raise RuntimeError("CUDA error at /opt/secret/kernel.cu:12")

    job_id = new_job(jobs, store, photo_bytes, steps=1)
    assert runner(jobs, store, Spy(embedded_generator, at_step=1, action=explode)).run(job_id) == "failed"
    error = jobs.get(job_id).error
    assert "RuntimeError" in error and "/opt/secret" not in error and "server log" in error
    assert jobs.depth() == 0


def test_a_few_step_server_runs_every_job_with_its_lora_and_sampler(jobs, store, embedded_generator, photo_bytes,
                                                                   tmp_path):
    from safetensors.torch import save_file

    dit = embedded_generator.pipe.dit
    lora_dir = tmp_path / "loras"
    lora_dir.mkdir()
    for name, scale in (("distill-4step", 0.01), ("style", 0.02)):
        q = dit.blocks[0].self_attn.q
        save_file({"blocks.0.self_attn.q.lora_A.weight": torch.randn(2, q.in_features) * scale,
                   "blocks.0.self_attn.q.lora_B.weight": torch.randn(q.out_features, 2) * scale},
                  str(lora_dir / f"{name}.safetensors"))
    seen = []

    class Recording(Spy):
        def generate(self, config, progress=None):
            seen.append(config)
            return super().generate(config, progress)

    spy = Recording(embedded_generator)
    few = runner(jobs, store, spy, lora_dir=str(lora_dir), few_step_lora="distill-4step")
    job_id = new_job(jobs, store, photo_bytes, steps=4, cfg=1.0, lora="style", lora_alpha=0.5)
    assert few.run(job_id) == "succeeded"
    config = seen[-1]
    assert (config.sampler, config.sigma_shift, config.steps, config.cfg) == ("renoise", 5.0, 4, 1.0)
    assert [(l.path.name, l.alpha) for l in config.loras] == [("distill-4step.safetensors", 1.0),
                                                             ("style.safetensors", 0.5)]
    embedded_generator.set_loras(())


def test_a_few_step_server_without_its_lora_fails_at_replica_start(serve_config, tmp_path):
    from wanray.inputs import InvalidInput
    from wanray.serving.generator import VideoGenerator

    (tmp_path / "loras").mkdir()
    config = serve_config.replace(lora_dir=str(tmp_path / "loras"), few_step_lora="distill-4step")
    loaded = []
    with pytest.raises(InvalidInput, match="unknown LoRA 'distill-4step'"):
        VideoGenerator(config, loader=lambda *a: loaded.append(a))
    assert loaded == []  # refused before any model work


class WatchedEvent:
    """The runner's idle event, telling the test when someone starts waiting on it."""

    def __init__(self, idle):
        import threading

        self.idle, self.waiting = idle, threading.Event()

    def __getattr__(self, name):
        return getattr(self.idle, name)

    def wait(self, timeout=None):
        self.waiting.set()
        return self.idle.wait(timeout)


def test_a_replica_serve_stops_lets_its_running_job_finish_first(serve_config, jobs, store, embedded_generator,
                                                                   photo_bytes, caplog, monkeypatch):
    import threading

    from wanray.serving.generator import VideoGenerator, log

    monkeypatch.setattr(log, "handlers", [*log.handlers, caplog.handler])  # ray.serve's logger does not propagate
    job_id = new_job(jobs, store, photo_bytes, steps=2)
    order = []

    def step_one():  # the job is at step 1 when Serve stops the replica (a downscale); it goes on once draining
        assert replica.runner.idle.waiting.wait(60), "the stopping replica did not wait for its running job"
        order.append("job still running while the replica drains")

    spy = Spy(embedded_generator, at_step=1, action=step_one)
    replica = VideoGenerator(serve_config.replace(drain_timeout_s=60), loader=lambda *a: spy)
    replica.runner.idle = WatchedEvent(replica.runner.idle)
    job = threading.Thread(target=lambda: order.append(replica.runner.run(job_id)))
    job.start()
    replica.__del__()  # what Serve's graceful shutdown calls (after telling Celery to take no more jobs)
    order.append("replica gone")
    job.join()
    assert order == ["job still running while the replica drains", "succeeded", "replica gone"]
    assert jobs.get(job_id).status == JobStatus.succeeded and "still running" not in caplog.text

    # an idle replica goes at once; one whose job outlives drain_timeout_s says the job will be redelivered
    idle = VideoGenerator(serve_config.replace(drain_timeout_s=60), loader=lambda *a: spy)
    idle.__del__()
    stuck = VideoGenerator(serve_config.replace(drain_timeout_s=0.05), loader=lambda *a: spy)
    stuck.runner.idle.clear()  # as during a job
    stuck.__del__()
    assert "stops with a job still running after 0 s; it will be redelivered" in caplog.text

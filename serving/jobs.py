"""Job records in Redis: the one source of truth for a job's state, shared by every ingress and generator replica.

A job moves queued -> running -> succeeded | failed | cancelled, and only forward: every transition is one
Lua script, so two replicas (a crashed one's redelivered job, a cancel racing a finish) never both win.
Non-terminal jobs never expire; terminal ones are kept ``job_ttl_s``. The set of queued + running jobs
(``active``) is the bounded queue, checked and grown atomically on admission.

Keys (P = "<queue_name>:"): P job:<id> (hash), P active (zset: id -> created_at), P lease:<id> (the replica
running it, expires unless renewed), P idem:<key> (idempotency key -> id), P workers (zset: replica -> last
heartbeat), P stats (hash: mean job seconds).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


@dataclass(kw_only=True)
class JobRecord:
    """A job as stored (all times are Unix seconds)."""

    id: str
    status: JobStatus
    created_at: float
    params: dict[str, Any] = field(default_factory=dict)  # the validated request (no image)
    input_key: str = ""
    video_key: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    steps: int = 0
    attempt: int = 0
    worker: str = ""
    error: str = ""
    cancel_requested: bool = False
    run_seconds: float | None = None

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> "JobRecord":
        def num(key: str, kind=float):
            value = data.get(key)
            return kind(value) if value not in (None, "") else None

        return cls(
            id=data["id"], status=JobStatus(data["status"]), created_at=float(data["created_at"]),
            params=json.loads(data.get("params") or "{}"), input_key=data.get("input_key", ""),
            video_key=data.get("video_key", ""), started_at=num("started_at"), finished_at=num("finished_at"),
            step=num("step", int) or 0, steps=num("steps", int) or 0, attempt=num("attempt", int) or 0,
            worker=data.get("worker", ""), error=data.get("error", ""),
            cancel_requested=data.get("cancel_requested") == "1", run_seconds=num("run_seconds"),
        )


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


# Shared by the scripts: end a job (terminal status, out of the active set, lease gone, record expires).
_FINALIZE = """
local function finalize(job, lease, active, id, status, now, ttl, error)
  redis.call('HSET', job, 'status', status, 'finished_at', now, 'error', error)
  redis.call('ZREM', active, id)
  if lease ~= '' then redis.call('DEL', lease) end
  redis.call('EXPIRE', job, ttl)
end
"""

# KEYS job, active, idem|'' ; ARGV max_queue, now, id, ttl, field, value, ...
_ADMIT = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'exists', existing} end
end
local depth = redis.call('ZCARD', KEYS[2])
if depth >= tonumber(ARGV[1]) then return {'full', tostring(depth)} end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
return {'ok', ARGV[3]}
"""

# KEYS key ; ARGV value: delete the key only while it still holds value
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS job, lease, active ; ARGV token, lease_ms, max_attempts, now, worker, ttl, id, exhausted_message
_CLAIM = _FINALIZE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', ''} end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return {'done', status} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {'busy', holder} end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  finalize(KEYS[1], KEYS[2], KEYS[3], ARGV[7], 'cancelled', ARGV[4], ARGV[6], 'cancelled by the client')
  return {'ended', 'cancelled'}
end
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0') + 1
if attempt > tonumber(ARGV[3]) then
  finalize(KEYS[1], KEYS[2], KEYS[3], ARGV[7], 'failed', ARGV[4], ARGV[6], ARGV[8])
  return {'ended', 'failed'}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'running', 'attempt', attempt, 'worker', ARGV[5], 'started_at', ARGV[4],
           'step', 0, 'steps', 0)
return {'run', tostring(attempt)}
"""

# KEYS job, lease ; ARGV token, lease_ms, step|'', steps, now
_HEARTBEAT = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'lost' end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 'lost' end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'step', ARGV[3], 'steps', ARGV[4], 'progress_at', ARGV[5]) end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 'cancel' end
return 'ok'
"""

# KEYS job, lease, active ; ARGV token, status, now, ttl, id, error, field, value, ...
_FINISH = _FINALIZE + """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'lost' end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then return status or 'missing' end
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
finalize(KEYS[1], KEYS[2], KEYS[3], ARGV[5], ARGV[2], ARGV[3], ARGV[4], ARGV[6])
return 'ok'
"""

# KEYS job, active ; ARGV now, ttl, id
_CANCEL = _FINALIZE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  finalize(KEYS[1], '', KEYS[2], ARGV[3], 'cancelled', ARGV[1], ARGV[2], 'cancelled by the client')
  return 'cancelled_now'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  return 'cancelling'
end
return status
"""


@dataclass(kw_only=True)
class Admission:
    outcome: str  # ok | full | exists
    job_id: str = ""
    depth: int = 0


class JobStore:
    """Job records, the bounded active set, leases and worker heartbeats, in one Redis."""

    def __init__(self, client, *, prefix: str, ttl_s: int):
        self.r = client  # a redis.Redis with decode_responses=True
        self.prefix = prefix
        self.ttl_s = int(ttl_s)
        self._admit = client.register_script(_ADMIT)
        self._claim = client.register_script(_CLAIM)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)

    @classmethod
    def connect(cls, url: str, *, prefix: str, ttl_s: int) -> "JobStore":
        import redis

        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5, socket_timeout=10,
                                      health_check_interval=30)
        return cls(client, prefix=prefix, ttl_s=ttl_s)

    # -- keys --
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def lease_key(self, job_id: str) -> str:
        return f"{self.prefix}lease:{job_id}"

    @property
    def active_key(self) -> str:
        return f"{self.prefix}active"

    # -- ingress side --
    def admit(self, job_id: str, *, params: dict, input_key: str, max_queue: int,
              idempotency_key: str | None = None, request_sha: str = "") -> Admission:
        """Record a new queued job if the active set has room (atomic with the check). ``request_sha`` names the
        request as sent, so a reused idempotency key can be told from a retry (``request_sha_of``)."""
        now = time.time()
        fields = {"id": job_id, "status": JobStatus.queued.value, "created_at": repr(now),
                  "params": json.dumps(params), "input_key": input_key, "attempt": "0", "request_sha": request_sha}
        flat = [x for kv in fields.items() for x in kv]
        idem = f"{self.prefix}idem:{idempotency_key}" if idempotency_key else ""
        outcome, value = self._admit(keys=[self.job_key(job_id), self.active_key, idem],
                                     args=[max_queue, repr(now), job_id, self.ttl_s, *flat])
        if outcome == "full":
            return Admission(outcome="full", depth=int(value))
        return Admission(outcome=outcome, job_id=value)

    def request_sha_of(self, job_id: str) -> str:
        """The ``request_sha`` a job was admitted with ("" for jobs recorded before it was kept)."""
        return self.r.hget(self.job_key(job_id), "request_sha") or ""

    def get(self, job_id: str) -> JobRecord | None:
        data = self.r.hgetall(self.job_key(job_id))
        return JobRecord.from_hash(data) if data else None

    def cancel(self, job_id: str) -> str:
        """'cancelled_now' (it was queued), 'cancelling' (running: stops at its next step), 'missing', or the
        terminal status it already had."""
        return self._cancel(keys=[self.job_key(job_id), self.active_key], args=[repr(time.time()), self.ttl_s, job_id])

    def fail_unqueued(self, job_id: str, error: str, idempotency_key: str | None = None) -> None:
        """A job admitted but never handed to the queue (the broker refused it): end it with the reason, and free its
        idempotency key, so the client's retry with that key makes a new job instead of getting this dead one."""
        with self.r.pipeline() as p:
            p.hset(self.job_key(job_id), mapping={"status": JobStatus.failed.value, "finished_at": repr(time.time()),
                                                  "error": error})
            p.zrem(self.active_key, job_id)
            p.expire(self.job_key(job_id), self.ttl_s)
            if idempotency_key:
                p.eval(_DELETE_IF_EQUAL, 1, f"{self.prefix}idem:{idempotency_key}", job_id)
            p.execute()

    def depth(self) -> int:
        """Queued + running jobs (what the bound applies to)."""
        return int(self.r.zcard(self.active_key))

    def active_counts(self) -> dict[str, int]:
        ids = self.r.zrange(self.active_key, 0, -1)
        counts = {JobStatus.queued.value: 0, JobStatus.running.value: 0}
        if ids:
            with self.r.pipeline() as p:
                for job_id in ids:
                    p.hget(self.job_key(job_id), "status")
                for status in p.execute():
                    if status in counts:
                        counts[status] += 1
        return counts

    def jobs_ahead(self, job: JobRecord) -> int:
        """Active jobs submitted before this one."""
        return int(self.r.zcount(self.active_key, "-inf", f"({job.created_at!r}"))

    # -- generator side --
    def claim(self, job_id: str, *, token: str, worker: str, lease_s: float, max_attempts: int) -> tuple[str, str]:
        """('run', attempt): this worker runs it now; ('busy', holder): another live worker has it;
        ('done', status): it had ended already; ('ended', status): the claim ended it (cancel requested, or
        too many attempts); ('missing', '')."""
        exhausted = (f"the generator replica stopped while running this job {max_attempts} times "
                     f"(it may not fit the replica's memory); giving up")
        outcome, value = self._claim(
            keys=[self.job_key(job_id), self.lease_key(job_id), self.active_key],
            args=[token, int(lease_s * 1000), max_attempts, repr(time.time()), worker, self.ttl_s, job_id, exhausted])
        return outcome, value

    def heartbeat(self, job_id: str, *, token: str, lease_s: float, step: int | None = None, steps: int = 0) -> str:
        """Renew the lease (and record progress); 'ok', 'cancel' (the client asked) or 'lost' (another owns it)."""
        return self._heartbeat(keys=[self.job_key(job_id), self.lease_key(job_id)],
                               args=[token, int(lease_s * 1000), "" if step is None else step, steps,
                                     repr(time.time())])

    def finish(self, job_id: str, *, token: str, status: JobStatus, error: str = "", **fields: Any) -> str:
        """End a running job this worker owns; 'ok', 'lost', or the status the job already had."""
        flat = [x for k, v in fields.items() for x in (k, str(v))]
        return self._finish(keys=[self.job_key(job_id), self.lease_key(job_id), self.active_key],
                            args=[token, status.value, repr(time.time()), self.ttl_s, job_id, error, *flat])

    # -- replicas and statistics --
    def worker_alive(self, worker: str) -> None:
        self.r.zadd(f"{self.prefix}workers", {worker: time.time()})

    def worker_gone(self, worker: str) -> None:
        self.r.zrem(f"{self.prefix}workers", worker)

    def live_workers(self, within_s: float) -> int:
        key = f"{self.prefix}workers"
        now = time.time()
        self.r.zremrangebyscore(key, "-inf", now - 10 * within_s)
        return int(self.r.zcount(key, now - within_s, "+inf"))

    def record_job_seconds(self, seconds: float) -> None:
        """Exponential mean of finished jobs' run time (for ETAs and Retry-After)."""
        key = f"{self.prefix}stats"
        old = self.r.hget(key, "job_seconds")
        mean = seconds if old is None else 0.8 * float(old) + 0.2 * seconds
        self.r.hset(key, "job_seconds", repr(mean))

    def mean_job_seconds(self) -> float | None:
        value = self.r.hget(f"{self.prefix}stats", "job_seconds")
        return float(value) if value is not None else None

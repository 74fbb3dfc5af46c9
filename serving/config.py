"""``ServeConfig``: everything the video API needs, in one typed, validated config.

The Serve config YAML (``serve_config.yaml``) passes its ``args:`` to ``wanray.serving.app:build_app``,
which turns them into a ``ServeConfig``; presets are functions named for what they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from wanray.config import ModelConfig

DEFAULT_QUEUE_NAME = "wanray-videos"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(kw_only=True, frozen=True)
class ParallelConfig:
    """How many GPUs one generator replica spans (reserved together as one STRICT_PACK placement group).

    Attributes:
        sequence_parallel: xDiT USP (Ulysses) degree: the DiT's attention heads are split across this many
            GPUs, so it must divide the number of heads. 1 = no sequence parallelism (the CPU path).
        cfg_parallel: run the conditional and unconditional passes of classifier-free guidance on two GPU
            groups at once (doubles the GPUs per replica).
    """

    sequence_parallel: int = 1
    cfg_parallel: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.sequence_parallel, int) or self.sequence_parallel < 1:
            raise ValueError(f"sequence_parallel must be a whole number >= 1, got {self.sequence_parallel!r}")

    @property
    def world_size(self) -> int:
        """GPUs (ranks) per replica: sequence_parallel x (2 with CFG parallel)."""
        return self.sequence_parallel * (2 if self.cfg_parallel else 1)


def check_parallel(parallel: ParallelConfig, *, num_heads: int, gpus_per_replica: int) -> None:
    """Validate a replica's parallel layout up front; the errors show the arithmetic."""
    world = parallel.world_size
    if num_heads % parallel.sequence_parallel:
        raise ValueError(
            f"sequence_parallel ({parallel.sequence_parallel}) must divide the DiT's attention heads: "
            f"num_heads({num_heads}) % sequence_parallel({parallel.sequence_parallel}) = "
            f"{num_heads % parallel.sequence_parallel}"
        )
    if world > 1 and gpus_per_replica == 0:
        raise ValueError(
            f"sequence_parallel({parallel.sequence_parallel}) * cfg_parallel({2 if parallel.cfg_parallel else 1}) "
            f"= {world} GPUs per replica, but the replica runs on CPU (gpus_per_replica 0); on CPU use 1"
        )
    if gpus_per_replica and world != gpus_per_replica:
        raise ValueError(
            f"sequence_parallel({parallel.sequence_parallel}) * cfg_parallel({2 if parallel.cfg_parallel else 1}) "
            f"= {world} != gpus_per_replica({gpus_per_replica})"
        )


@dataclass(kw_only=True, frozen=True)
class ServeConfig:
    """The video API: model, queue, store, limits, autoscaling and replica resources.

    Attributes:
        model: which model every generator replica loads (the core's ``ModelConfig``).
        lora_dir: folder of LoRA files (``NAME.safetensors``); requests name a LoRA, never a path.
        few_step_lora: name of a 4-step distillation LoRA in ``lora_dir`` (e.g. LightX2V's) that makes this a
            few-step server: every job runs with it, 4 steps, cfg 1, shift 5 and the model family's sampler
            (``wanray.sampling.few_step``); a request's own LoRA is added on top, its steps and cfg still count.
        redis_url: Redis for the job queue (Celery broker and result backend) and the job records.
        queue_name: the Celery queue; also the prefix of every Redis key the API writes.
        store_uri: where videos (and uploaded photos, until their job ends) are kept: a local folder or any
            fsspec URI (``s3://bucket/prefix`` with s3fs installed, ``memory://`` in tests).
        max_queued_jobs: the bounded queue: jobs queued or running at once; beyond it POST answers 503.
        retry_after_s: the Retry-After of a 503 before any job has finished (then: the mean job time).
        max_upload_bytes: largest request body (413 beyond it).
        auth_token_sha256: hex SHA-256 of the bearer token the /v1 API requires; None = no auth. Only the hash
            is in the config (``wanray serve hash-token`` prints it).
        max_frames / max_side / max_steps: per-request limits the operator sets (on top of the model's own).
        default_height / default_width / default_frames / default_steps: what a request that omits them gets
            (None: the model's defaults).
        job_ttl_s: how long job records are kept after they end; their videos and photos go with them (the
            ingress deletes a job's files within an hour of its record expiring).
        redelivery_timeout_s: a job whose replica stopped heart-beating this long ago is handed to another
            replica (the broker's visibility timeout; a live replica keeps extending it).
        max_attempts: deliveries of one job before it fails as "the replica kept stopping".
        drain_timeout_s: how long a generator replica that Serve stops (a downscale, a redeploy) waits for the job
            it is running before it goes; past it the job is redelivered and counts an attempt. Serve does not see
            queue jobs as requests, so it may stop a busy replica when the queue shrinks; an idle one goes at once.
        min_replicas / max_replicas: generator replicas (min are kept warm, model loaded).
        target_jobs_per_replica: autoscaling target: queued + running jobs per replica.
        upscale_delay_s / downscale_delay_s: how long the queue must ask for more / fewer replicas first.
        autoscaling_poll_s: how often the autoscaler reads the queue depth from Redis.
        cpus_per_replica / gpus_per_replica: resources of one generator replica (GPUs as one placement group).
        parallel: the replica's sequence-parallel / CFG-parallel layout (must match gpus_per_replica).
        ingress_replicas: replicas of the HTTP ingress (stateless; state is in Redis).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    lora_dir: str | None = None
    few_step_lora: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = DEFAULT_QUEUE_NAME
    store_uri: str = "outputs/serving"
    max_queued_jobs: int = 64
    retry_after_s: int = 30
    max_upload_bytes: int = 10 * 1024 * 1024
    auth_token_sha256: str | None = None
    max_frames: int = 81
    max_side: int = 1280
    max_steps: int = 50
    default_height: int | None = None
    default_width: int | None = None
    default_frames: int | None = None
    default_steps: int | None = None
    job_ttl_s: int = 7 * 24 * 3600
    redelivery_timeout_s: float = 60.0
    max_attempts: int = 3
    drain_timeout_s: float = 600.0
    min_replicas: int = 1
    max_replicas: int = 2
    target_jobs_per_replica: float = 1.0
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 120.0
    autoscaling_poll_s: float = 1.0
    cpus_per_replica: float = 1.0
    gpus_per_replica: int = 0
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    ingress_replicas: int = 1

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.queue_name):
            raise ValueError(f"queue_name must be letters, digits, '.', '_' or '-' (max 64), got {self.queue_name!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis_url must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        positive = {
            "max_queued_jobs": self.max_queued_jobs, "retry_after_s": self.retry_after_s,
            "max_upload_bytes": self.max_upload_bytes, "max_frames": self.max_frames, "max_side": self.max_side,
            "max_steps": self.max_steps, "job_ttl_s": self.job_ttl_s, "max_attempts": self.max_attempts,
            "max_replicas": self.max_replicas, "target_jobs_per_replica": self.target_jobs_per_replica,
            "redelivery_timeout_s": self.redelivery_timeout_s, "autoscaling_poll_s": self.autoscaling_poll_s,
            "ingress_replicas": self.ingress_replicas, "drain_timeout_s": self.drain_timeout_s,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas, got min_replicas {self.min_replicas}, "
                f"max_replicas {self.max_replicas}"
            )
        if self.cpus_per_replica < 0 or self.gpus_per_replica < 0:
            raise ValueError("cpus_per_replica and gpus_per_replica must be >= 0")
        if self.few_step_lora is not None and self.lora_dir is None:
            raise ValueError(f"few_step_lora {self.few_step_lora!r} is a name in lora_dir; set lora_dir too")
        if self.auth_token_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.auth_token_sha256):
            raise ValueError("auth_token_sha256 must be 64 lowercase hex digits (wanray serve hash-token prints it)")
        if self.parallel.world_size > 1 or self.gpus_per_replica:
            # heads are checked again against the loaded model in each replica
            check_parallel(self.parallel, num_heads=_heads_or_one(self),
                           gpus_per_replica=self.gpus_per_replica)

    # -- YAML / dict round trip (the Serve config's ``args:``) --
    @classmethod
    def from_args(cls, args: dict[str, Any] | None) -> "ServeConfig":
        """Build from the Serve config's ``args:`` (nested dicts for ``model`` and ``parallel``)."""
        args = dict(args or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown serving setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if isinstance(args.get("model"), dict):
            args["model"] = ModelConfig(**args["model"])
        elif isinstance(args.get("model"), str):
            args["model"] = ModelConfig(model=args["model"])
        if isinstance(args.get("parallel"), dict):
            args["parallel"] = ParallelConfig(**args["parallel"])
        return cls(**args)

    def to_args(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ServeConfig":
        return dataclasses.replace(self, **changes)

    @property
    def key_prefix(self) -> str:
        return f"{self.queue_name}:"


def _heads_or_one(config: ServeConfig) -> int:
    """The DiT's attention heads when the model's spec can be read here; else a value that passes."""
    from wanray.serving.models import model_spec_for

    spec = model_spec_for(config.model)
    return spec.dit.num_heads if spec is not None else config.parallel.sequence_parallel


def hash_token(token: str) -> str:
    """What goes into ``auth_token_sha256``. Surrounding whitespace (a secret file's newline) is not part of the token:
    the API strips what a client sends the same way."""
    token = token.strip()
    if len(token) < 16:
        raise ValueError("an API token must be at least 16 characters "
                         "(make one with: python -c 'import secrets; print(secrets.token_urlsafe())')")
    return hashlib.sha256(token.encode()).hexdigest()


# -- presets --


def embedded_cpu(**overrides: Any) -> ServeConfig:
    """The embedded model on CPU replicas: small defaults so a job takes seconds (``wanray serve up``)."""
    base = dict(
        model=ModelConfig(model="embedded", device="cpu"),
        default_height=64, default_width=64, default_frames=9, default_steps=4,
        max_side=256, max_frames=33, max_steps=20, redelivery_timeout_s=20.0,
        min_replicas=1, max_replicas=2, upscale_delay_s=2.0, downscale_delay_s=60.0,
    )
    base.update(overrides)
    return ServeConfig(**base)


def wan21_i2v_720p_gpu(*, sequence_parallel: int = 1, cfg_parallel: bool = False, **overrides: Any) -> ServeConfig:
    """Wan2.1-I2V-14B-720P on GPU replicas of ``sequence_parallel x (2 if cfg_parallel)`` GPUs each."""
    parallel = ParallelConfig(sequence_parallel=sequence_parallel, cfg_parallel=cfg_parallel)
    base = dict(
        model=ModelConfig(model="wan2.1-i2v-14b-720p", device="cuda"),
        parallel=parallel, gpus_per_replica=parallel.world_size, cpus_per_replica=4.0,
        default_height=720, default_width=1280, default_frames=77, max_frames=81, max_steps=50,
        redelivery_timeout_s=120.0, min_replicas=1, max_replicas=4, downscale_delay_s=600.0,
    )
    base.update(overrides)
    return ServeConfig(**base)

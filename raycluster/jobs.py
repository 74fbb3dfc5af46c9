"""Ray jobs for wanray: submit a training, evaluation or data job to a cluster; read its status and logs.

A job is ``python -m <wanray module> <args>`` run by Ray's job supervisor on the cluster, with the
installed wanray package shipped in its runtime_env (see ``runtime_env.py``). This wraps Ray's
``JobSubmissionClient``; the dashboard (job list, logs, Train/Data views) shows the same jobs.

Where jobs go (first found): ``--address http://HEAD:8265``, ``--state-file`` (a recorded cluster),
``$RAY_API_SERVER_ADDRESS``, ``$RAY_ADDRESS`` when it is an http URL, else the cluster ``wanray cluster up``
recorded in the default state file. What is chosen here is where jobs go: unlike Ray's own
``JobSubmissionClient``, a ``$RAY_ADDRESS`` left in the environment (a driver, a job, another cluster's
``wanray cluster env``) never overrides an explicit address.
Token authentication: the token is sent as ``Authorization: Bearer`` when the recorded cluster uses
one, when ``--token-file`` is given, or, as Ray's own clients do, when ``RAY_AUTH_MODE=token``
(``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from wanray.raycluster.local import LocalCluster, default_state_file

# kind -> (module run by `python -m`, what it does)
JOB_KINDS: dict[str, tuple[str, str]] = {
    "train": ("wanray.training.train", "fine-tune a Wan model (LoRA or full) with Ray Train: "
                                       "-- --preset NAME [--set KEY=VALUE]"),
    "eval": ("wanray.training.evaluate", "rank models on a dataset split (PSNR/SSIM, leaderboard): "
                                         "-- --models ... --dataset DIR --out DIR"),
    "synth": ("wanray.datasets.synth", "write a synthetic photo/video dataset: -- --n N --out DIR"),
    "cache": ("wanray.datasets.cache", "encode a dataset into the latent cache (Parquet): -- ROOT --out DIR"),
    "check": ("wanray.raycluster.check", "print what a job sees on the cluster (wanray, versions, GPUs)"),
}


class JobTimeout(RuntimeError):
    """A job did not end within the time given."""


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(kw_only=True)
class JobRequest:
    """One job to submit.

    Attributes:
        kind: one of ``JOB_KINDS`` (train, eval, synth, cache, check).
        args: arguments for the job's module, as on its command line.
        env_vars: extra environment variables for the job (driver, tasks and actors).
        entrypoint_num_cpus / entrypoint_num_gpus: resources reserved for the driver process only
            (Ray Train's workers ask for their own); None reserves nothing.
        submission_id: the job id; default ``wanray-<kind>-<time>-<random>``.
    """

    kind: str
    args: tuple[str, ...] = ()
    env_vars: dict[str, str] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    submission_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}; choose one of {', '.join(JOB_KINDS)}")
        self.args = tuple(self.args)
        bad = [k for k in self.env_vars if not _ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable name(s) {bad}: use letters, digits and _")
        for name, value in (("entrypoint_num_cpus", self.entrypoint_num_cpus),
                            ("entrypoint_num_gpus", self.entrypoint_num_gpus)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.submission_id is None:
            self.submission_id = f"wanray-{self.kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

    @property
    def module(self) -> str:
        return JOB_KINDS[self.kind][0]

    def entrypoint(self) -> str:
        return shlex.join(["python", "-m", self.module, *self.args])


@dataclass(kw_only=True)
class ClusterEndpoint:
    """A cluster's dashboard (HTTP API) and the headers that authenticate to it."""

    dashboard_url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def auth(self) -> str:
        return "token" if self.headers else "disabled"


def resolve_endpoint(*, address: str | None = None, state_file: Path | None = None,
                     token_file: Path | None = None) -> ClusterEndpoint:
    """Where to send jobs, and with which token (see the module docstring for the order)."""
    if address is None and state_file is None:
        address = os.environ.get("RAY_API_SERVER_ADDRESS") or _http_or_none(os.environ.get("RAY_ADDRESS"))
    if address is None:
        state = state_file or default_state_file()
        if not state.is_file():
            raise ValueError(
                f"no cluster to talk to: pass --address http://HEAD:8265, set RAY_API_SERVER_ADDRESS, or start one "
                f"with `wanray cluster up` (no cluster recorded in {state})"
            )
        cluster = LocalCluster.load(state)
        token = read_token(token_file) if token_file else cluster.token()
        return ClusterEndpoint(dashboard_url=cluster.dashboard_url, headers=_bearer(token))
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"the address must be the dashboard's URL, e.g. http://127.0.0.1:8265, got {address!r}")
    token = read_token(token_file) if token_file else token_from_environment()
    return ClusterEndpoint(dashboard_url=address.rstrip("/"), headers=_bearer(token))


def _http_or_none(value: str | None) -> str | None:
    return value if value and value.startswith(("http://", "https://")) else None


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def read_token(path: Path) -> str:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} does not exist")
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def token_from_environment() -> str | None:
    """The token Ray's own clients would use: only when ``RAY_AUTH_MODE=token``."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not path.expanduser().is_file():
        raise ValueError(
            f"RAY_AUTH_MODE=token but no token: set RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or pass --token-file "
            f"({path} does not exist)"
        )
    return read_token(path)


def job_client(endpoint: ClusterEndpoint):
    """Ray's JobSubmissionClient for the endpoint; an unreachable or refusing cluster is a clear error."""
    from ray.job_submission import JobSubmissionClient

    try:
        with _without_env(_RAY_ADDRESS_VARIABLES):  # Ray lets them override the URL it is given
            return JobSubmissionClient(endpoint.dashboard_url, headers=dict(endpoint.headers))
    except Exception as e:  # ConnectionError, HTTP 401/403 from the version check, ...
        hint = ("the cluster wants a token: pass --token-file or set RAY_AUTH_MODE=token with RAY_AUTH_TOKEN_PATH"
                if not endpoint.headers and ("401" in str(e) or "uthenticat" in str(e)) else
                "is the cluster up? (`wanray cluster status`)")
        raise RuntimeError(f"cannot use the Ray dashboard at {endpoint.dashboard_url}: {e}; {hint}") from e


_RAY_ADDRESS_VARIABLES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")


@contextlib.contextmanager
def _without_env(names: tuple[str, ...]):
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def submit(endpoint: ClusterEndpoint, request: JobRequest, *, cache_dir: Path | None = None) -> str:
    """Submit the job with the installed wanray shipped as ``py_modules``; returns the job id."""
    from wanray.raycluster.runtime_env import job_runtime_env

    if importlib.util.find_spec(request.module) is None:  # it would only fail on the cluster, after the upload
        raise ValueError(f"{request.module} is not in this wanray installation, so a {request.kind} job cannot run it")
    client = job_client(endpoint)
    # Ray suggests excluding files over 10 MiB from the upload; the embedded model's are meant to travel.
    logging.getLogger("ray._private.runtime_env.packaging").setLevel(logging.ERROR)
    return client.submit_job(
        entrypoint=request.entrypoint(),
        submission_id=request.submission_id,
        runtime_env=job_runtime_env(env_vars=request.env_vars, cache_dir=cache_dir),
        metadata={"wanray_job": request.kind},
        entrypoint_num_cpus=request.entrypoint_num_cpus,
        entrypoint_num_gpus=request.entrypoint_num_gpus,
    )


def wait(client, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0) -> str:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED; returns that status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value)
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeout(f"job {job_id} still {status.value} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def follow_logs(client, job_id: str, out: TextIO) -> None:
    """Stream the job's logs to ``out`` until the job ends."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())


def dashboard_job_url(endpoint: ClusterEndpoint, job_id: str) -> str:
    return f"{endpoint.dashboard_url}/#/jobs/{job_id}"

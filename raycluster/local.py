"""A single-node Ray cluster on this machine that can be stopped without touching any other.

``ray stop`` kills every Ray process on the machine. We start ``ray start --head`` in a new process
session instead (``setsid``): every process of that cluster (GCS, raylet, dashboard, workers, job
drivers) inherits the session id, so stopping the cluster is "end every process of that session".

Every port the head binds is chosen here (GCS, dashboard, dashboard agent, Ray client server), so
two clusters on one machine never fight over Ray's fixed defaults (52365, 10001): a dashboard agent
that loses that race leaves its cluster unable to run jobs.

Token authentication (Ray >= 2.60): with ``auth="token"`` the cluster's processes get
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH=<token_file>``; clients send the token as
``Authorization: Bearer <token>`` (``LocalCluster.http_headers``) or read it from the same
environment (``LocalCluster.client_env``). ``~/.ray/auth_token`` is never written: a token there
would switch on authentication for every other Ray started on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

logger = logging.getLogger(__name__)

AUTH_MODES = ("token", "disabled")
RAYLET_STARTUP_TIMEOUT = "The current node timed out during startup"
STATE_FILE_ENV = "WANRAY_CLUSTER_STATE"


def default_state_file() -> Path:
    """Where ``wanray cluster up`` records its cluster: ``$WANRAY_CLUSTER_STATE`` or ``~/.wanray/cluster.json``."""
    return Path(os.environ.get(STATE_FILE_ENV, Path.home() / ".wanray" / "cluster.json")).expanduser()


@dataclass(kw_only=True)
class LocalCluster:
    """What a started cluster is: where to reach it, how to authenticate, which process session to stop."""

    address: str  # GCS address, e.g. 127.0.0.1:6379 (for ray.init / RAY_ADDRESS)
    dashboard_url: str  # http://127.0.0.1:8265 (for job submission and the dashboard)
    session_id: int  # process session of every process of the cluster
    temp_dir: str
    auth: str = "disabled"  # "token" or "disabled"
    token_file: str | None = None  # the cluster's token (auth="token"), readable by its owner only
    log_file: str | None = None  # output of `ray start`
    work_dir: str | None = None  # working directory of its processes: relative job paths resolve here

    def token(self) -> str | None:
        if self.auth != "token" or not self.token_file:
            return None
        return Path(self.token_file).read_text().strip()

    def http_headers(self) -> dict[str, str]:
        """Headers for the dashboard's HTTP API (job submission, State API)."""
        token = self.token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client_env(self) -> dict[str, str]:
        """Environment for Ray clients (``ray.init``, ``ray status``, ``ray job ...``) to reach this cluster."""
        # RAY_ADDRESS: ray.init / ray status; RAY_API_SERVER_ADDRESS: ray job ... (the dashboard's HTTP API)
        env = {"RAY_ADDRESS": self.address, "RAY_API_SERVER_ADDRESS": self.dashboard_url, "RAY_AUTH_MODE": self.auth}
        if self.auth == "token" and self.token_file:
            env["RAY_AUTH_TOKEN_PATH"] = self.token_file
        return env

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "LocalCluster":
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` now ("" for every interface)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(port: int, what: str) -> None:
    """Nothing listens on the port (connections of a stopped cluster in TIME_WAIT do not count, as for Ray)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ValueError(
                f"{what} port {port} is already in use (another Ray cluster?); choose another one") from None


def ray_executable() -> str:
    found = Path(sys.executable).parent / "ray"
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


def write_new_token(path: Path) -> None:
    """A fresh random token in a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def start_head(
    *,
    num_cpus: int,
    num_gpus: int | None = 0,
    memory_bytes: int | None = None,
    port: int | None = None,
    dashboard_port: int | None = None,
    object_store_bytes: int | None = 2 * 1024**3,
    resources: dict[str, float] | None = None,
    auth: str = "disabled",
    token_file: str | Path | None = None,
    temp_dir: str | None = None,
    work_dir: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
) -> LocalCluster:
    """``ray start --head`` in its own process session, bound to 127.0.0.1.

    ``num_gpus=None`` lets Ray detect the GPUs; ``memory_bytes=None`` declares the machine's memory;
    ``object_store_bytes=None`` takes Ray's default (30% of memory).
    ``auth="token"`` needs ``token_file``: an existing token is reused, a missing file gets a new one.
    Unset ports are chosen free; a given port that is taken is an error.
    ``work_dir`` (default: the home directory, as on cluster nodes) is the working directory of the
    cluster's processes, so of job drivers too: never the caller's, where ``python -m wanray...`` would
    import a source checkout ahead of the package the job ships.
    """
    if num_cpus < 1:
        raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
    if num_gpus is not None and num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    reserved = sorted(set(resources or {}) & {"CPU", "GPU", "memory", "object_store_memory"})
    if reserved:
        raise ValueError(f"{reserved} are not custom resources: declare them with num_cpus / num_gpus / "
                         "memory_bytes / object_store_bytes (wanray cluster up --num-cpus, --num-gpus, --memory, "
                         "--object-store-memory)")
    bad = [f"{k}={v}" for k, v in (resources or {}).items() if not isinstance(v, (int, float)) or v < 0]
    if bad:
        raise ValueError(f"custom resource amounts must be numbers >= 0, got {', '.join(bad)}")
    if auth not in AUTH_MODES:
        raise ValueError(f"auth must be one of {AUTH_MODES}, got {auth!r}")
    if auth == "token" and token_file is None:
        raise ValueError("auth='token' needs a token_file (it is created with a new token if missing)")
    work_dir = Path(work_dir or Path.home()).expanduser().resolve()
    if not work_dir.is_dir():
        raise ValueError(f"work_dir {work_dir} is not a directory")
    for given, what in ((port, "GCS"), (dashboard_port, "dashboard")):
        if given:
            check_port_free(given, what)
    port = port or free_port()
    dashboard_port = dashboard_port or free_port()
    temp_dir = temp_dir or f"/tmp/ray-{os.getuid()}-{port}"

    child_env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": auth}
    # an address inherited from the caller (another cluster) must not leak into this cluster's jobs
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        child_env.pop(name, None)
    # `python` in job entrypoints must be this interpreter (the one with wanray's dependencies).
    child_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{child_env.get('PATH', '')}"
    if auth == "token":
        token_file = Path(token_file).expanduser().resolve()
        if not token_file.is_file() or not token_file.read_text().strip():
            write_new_token(token_file)
        child_env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
        child_env.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file

    cmd = [
        ray_executable(), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--include-dashboard=true",
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
        f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    if object_store_bytes is not None:
        cmd.append(f"--object-store-memory={object_store_bytes}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    if memory_bytes is not None:
        cmd.append(f"--memory={memory_bytes}")
    if resources:
        cmd.append(f"--resources={json.dumps(resources)}")
    log = Path(temp_dir + ".start.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    retried = False
    while True:
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT, env=child_env,
                                    cwd=work_dir)
        cluster = LocalCluster(
            address=f"127.0.0.1:{port}", dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            session_id=os.getsid(proc.pid), temp_dir=temp_dir, auth=auth,
            token_file=str(token_file) if auth == "token" else None, log_file=str(log), work_dir=str(work_dir),
        )
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if head_node_alive(cluster):
                    return cluster
                time.sleep(0.5)
        except BaseException:  # Ctrl-C while waiting: leave no head running that no state file records
            stop(cluster, keep_log=True)
            raise
        timed_out = proc.poll() is None
        stop(cluster, keep_log=True)
        proc.wait()
        if timed_out:
            raise RuntimeError(f"Ray cluster did not come up within {timeout_s:.0f} s; see {log}")
        output = log.read_text(errors="replace")
        # Ray gives the raylet a fixed 30 s to register; on a busy machine that can run out once
        if retried or RAYLET_STARTUP_TIMEOUT not in output or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed (exit {proc.returncode}); see {log}:\n{output[-2000:]}")
        logger.warning("ray start: the raylet did not register within Ray's 30 s (busy machine?); trying again")
        retried = True


def dashboard_get(cluster: LocalCluster, path: str, timeout_s: float = 5) -> dict:
    """GET a JSON endpoint of the cluster's dashboard, with its token."""
    import urllib.request

    request = urllib.request.Request(cluster.dashboard_url + path, headers=cluster.http_headers())
    with urllib.request.urlopen(request, timeout=timeout_s) as r:
        return json.loads(r.read())


def alive_nodes(cluster: LocalCluster, timeout_s: float = 5) -> list[dict]:
    """The cluster's ALIVE nodes from the State API (``resources_total``, ``is_head_node``, ...)."""
    nodes = dashboard_get(cluster, "/api/v0/nodes", timeout_s=timeout_s)["data"]["result"]["result"]
    return [n for n in nodes if n.get("state") == "ALIVE"]


def head_node_alive(cluster: LocalCluster) -> bool:
    """Ready for work: the dashboard answers and the head's raylet has registered (jobs need its agent)."""
    try:
        return any(n.get("is_head_node") for n in alive_nodes(cluster))
    except Exception:
        return False


def session_pids(session_id: int) -> list[int]:
    """Live (non-zombie) processes of a process session."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.getsid(int(entry.name)) != session_id:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, PermissionError, FileNotFoundError, IndexError):
            continue
        if state != "Z":  # a zombie has already exited; only its parent can reap it
            pids.append(int(entry.name))
    return pids


def ray_session_pids(cluster: LocalCluster) -> list[int]:
    """The live processes of the cluster's recorded session, if that session is still a Ray head's; else none.

    A state file can outlive its cluster (a reboot): the session id may since belong to unrelated processes, which
    must never be counted as the cluster, let alone signalled."""
    pids = session_pids(cluster.session_id)
    names = process_names(pids).values()
    is_ray = any(n in ("ray", "gcs_server", "raylet") or n.startswith(("ray::", "ray-")) for n in names)
    return pids if is_ray else []


def process_names(pids: list[int]) -> dict[int, str]:
    """pid -> what it is: ``gcs_server``, ``raylet``, ``dashboard.py``, ``ray::IDLE``, ``python -m MODULE``..."""
    names = {}
    for pid in pids:
        try:
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if not argv:
            continue
        names[pid] = _describe(argv)
    return names


def _describe(argv: list[str]) -> str:
    # processes that renamed themselves put their whole title in argv[0]: "ray::IDLE", "ray-dashboard-JobHead-0 (...)"
    program = Path(argv[0].split(" ")[0]).name
    if not program.startswith("python"):
        return program
    rest = argv[1:]
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
        rest = rest[1:]
    if rest[:1] == ["-m"] and len(rest) > 1:
        return f"python -m {rest[1]}"
    if rest[:1] == ["-c"]:
        return "python -c"
    return Path(rest[0]).name if rest else program


def stop(cluster: LocalCluster, grace_s: float = 10, keep_log: bool = False) -> list[int]:
    """End every process of the cluster's session (TERM, then KILL after ``grace_s``); returns leftovers.

    Removes the cluster's temp folder and, unless ``keep_log``, the log of ``ray start``.
    """
    for pid in session_pids(cluster.session_id):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session_pids(cluster.session_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in session_pids(cluster.session_id):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while session_pids(cluster.session_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = session_pids(cluster.session_id)
    if not leftovers:  # a process that survived may still be writing there
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        if cluster.log_file and not keep_log:
            Path(cluster.log_file).unlink(missing_ok=True)
    return leftovers


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

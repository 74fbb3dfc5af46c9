"""A single-node Ray cluster on this machine that can be stopped without touching any other.

``ray stop`` kills every Ray process on the machine. We start ``ray start --head`` in a new process
session instead (``setsid``): every process of that cluster (GCS, raylet, dashboard, workers, job
drivers) inherits the session id, so stopping the cluster is "end every process of that session".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(kw_only=True)
class LocalCluster:
    """What a started cluster is: where to reach it and which process session to stop."""

    address: str  # GCS address, e.g. 127.0.0.1:6379 (for ray.init / RAY_ADDRESS)
    dashboard_url: str  # http://127.0.0.1:8265 (for job submission and the dashboard)
    session_id: int  # process session of every process of the cluster
    temp_dir: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "LocalCluster":
        return cls(**json.loads(path.read_text()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_executable() -> str:
    found = Path(sys.executable).parent / "ray"
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


def start_head(
    *,
    num_cpus: int,
    num_gpus: int = 0,
    port: int | None = None,
    dashboard_port: int | None = None,
    object_store_bytes: int = 2 * 1024**3,
    resources: dict[str, float] | None = None,
    temp_dir: str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
) -> LocalCluster:
    """``ray start --head`` in its own process session, bound to 127.0.0.1."""
    port = port or free_port()
    dashboard_port = dashboard_port or free_port()
    temp_dir = temp_dir or f"/tmp/ray-{os.getuid()}-{port}"
    cmd = [
        ray_executable(), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--include-dashboard=true",
        f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", f"--object-store-memory={object_store_bytes}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    if resources:
        cmd.append(f"--resources={json.dumps(resources)}")
    log = Path(temp_dir + ".start.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    cluster = LocalCluster(
        address=f"127.0.0.1:{port}", dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        session_id=os.getsid(proc.pid), temp_dir=temp_dir,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(cluster)
            raise RuntimeError(f"ray start failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
        if _dashboard_up(cluster.dashboard_url):
            return cluster
        time.sleep(0.5)
    stop(cluster)
    raise RuntimeError(f"Ray cluster did not come up within {timeout_s:.0f} s; see {log}")


def _dashboard_up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/api/version", timeout=2) as r:
            return r.status == 200
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


def stop(cluster: LocalCluster, grace_s: float = 10) -> list[int]:
    """End every process of the cluster's session (TERM, then KILL after ``grace_s``); returns leftovers."""
    for pid in session_pids(cluster.session_id):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session_pids(cluster.session_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in session_pids(cluster.session_id):
        _signal(pid, signal.SIGKILL)
    time.sleep(0.2)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    return session_pids(cluster.session_id)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

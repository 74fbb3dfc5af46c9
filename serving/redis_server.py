"""A throwaway redis-server (the Debian package) on a free loopback port, for tests and ``wanray serve up``.

Its data lives in a temporary folder (no snapshots, no append-only file), so nothing outlives it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from wanray.raycluster.local import free_port


@dataclass(kw_only=True)
class RedisServer:
    url: str  # redis://127.0.0.1:PORT/0
    pid: int
    data_dir: str


def redis_server_executable() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise FileNotFoundError(
            "redis-server is not installed; install the Debian package (apt-get install redis-server) "
            "or pass --redis-url redis://HOST:PORT/0 of a running Redis"
        )
    return found


def start_redis(*, port: int | None = None, timeout_s: float = 20) -> RedisServer:
    """Start ``redis-server`` bound to 127.0.0.1 in its own process session; returns once it answers PING."""
    import redis

    port = port or free_port()
    data_dir = tempfile.mkdtemp(prefix="wanray-redis-")
    cmd = [
        redis_server_executable(), "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir,
        "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
        "--logfile", str(Path(data_dir) / "redis.log"),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(url=f"redis://127.0.0.1:{port}/0", pid=proc.pid, data_dir=data_dir)
    client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (Path(data_dir) / "redis.log").read_text(errors="replace")[-1000:]
            shutil.rmtree(data_dir, ignore_errors=True)
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {log}")
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.1)
    stop_redis(server)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout_s:.0f} s")


def stop_redis(server: RedisServer, grace_s: float = 10) -> None:
    """Stop the server started by ``start_redis`` (by its pid only) and delete its folder."""
    _signal(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(server.pid):
        _signal(server.pid, signal.SIGKILL)
    shutil.rmtree(server.data_dir, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """True while the process runs (a zombie counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        try:  # our own child: reap it
            import os

            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def _signal(pid: int, sig: int) -> None:
    import os

    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

"""``wanray serve up|status|down``: the packaged Serve config YAML deployed through the dashboard (as
``serve deploy`` does) on a local cluster of its own, with a redis-server it starts; down leaves nothing."""

import json
import subprocess
import sys
import urllib.request

from wanray.raycluster.local import free_port, session_pids
from wanray.serving.redis_server import pid_alive


def wanray(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "wanray", *args], capture_output=True, text=True, timeout=timeout)


def test_serve_up_status_down(tmp_path):
    state = tmp_path / "serve.json"
    port = free_port()
    up = wanray("serve", "up", "--port", str(port), "--state-file", str(state), "--store", str(tmp_path / "store"),
                "--num-cpus", "3", "--max-replicas", "1")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"wanray video API ready: http://127.0.0.1:{port}/" in up.stdout
        recorded = json.loads(state.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/dances", timeout=30) as r:
            assert "robot" in {d["name"] for d in json.load(r)}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert b'id="photo"' in r.read()
        status = wanray("serve", "status", "--state-file", str(state), timeout=120)
        assert status.returncode == 0 and "app: RUNNING" in status.stdout and '"generator_replicas": 1' in status.stdout
        again = wanray("serve", "up", "--state-file", str(state), timeout=120)
        assert again.returncode == 1 and "already up" in again.stderr
    finally:
        down = wanray("serve", "down", "--state-file", str(state), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not state.exists()
    assert session_pids(recorded["cluster"]["session_id"]) == []
    assert not pid_alive(recorded["redis"]["pid"])
    assert wanray("serve", "status", "--state-file", str(state), timeout=120).returncode == 1

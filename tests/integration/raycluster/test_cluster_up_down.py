"""`wanray cluster up|status|env|down` on a second cluster with token auth: jobs and clients use the token,
and `down` leaves no process of that cluster behind (checked by process session and by command line)."""

import os
import random
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from wanray.raycluster.local import LocalCluster, check_port_free, free_port, session_pids, stop

from wanray.cli import main


def _wanray(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "wanray", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _processes_mentioning(text):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_cluster_up_serves_token_clients_and_down_leaves_nothing(tmp_path, job_package_cache, capsys, printed_json,
                                                                 monkeypatch):
    # a GCS address left in the environment (here: nothing listens there) must not divert `--state-file` jobs;
    # Ray's JobSubmissionClient would let it override the URL it is given
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    state = tmp_path / "state" / "cluster.json"
    port, dashboard_port = free_port(), free_port()
    cpus, custom = random.randint(2, 4), random.randint(1, 9)
    up = _wanray("cluster", "up", "--state-file", state, "--port", port, "--dashboard-port", dashboard_port,
                 "--num-cpus", cpus, "--num-gpus", 0, "--memory", "2GiB", "--object-store-memory", "256MiB",
                 "--resource", f"wanray_test={custom}")
    assert up.returncode == 0, up.stdout + up.stderr
    cluster = LocalCluster.load(state)
    try:
        assert session_pids(cluster.session_id), "the cluster must outlive the `wanray cluster up` process"
        assert cluster.dashboard_url == f"http://127.0.0.1:{dashboard_port}" and cluster.address.endswith(f":{port}")
        assert cluster.auth == "token" and Path(cluster.token_file).parent == state.parent

        # the dashboard's API refuses requests without the token
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(cluster.dashboard_url + "/api/jobs/", timeout=10)
        assert refused.value.code == 401

        assert main(["cluster", "up", "--state-file", str(state)]) == 1
        assert "already up" in capsys.readouterr().err

        assert main(["cluster", "status", "--state-file", str(state), "--json"]) == 0
        status = printed_json(capsys.readouterr().out)
        assert status["up"] and status["auth"] == "token" and status["nodes"] == 1, status
        assert status["resources"]["CPU"] == cpus and status["resources"]["wanray_test"] == custom
        assert status["resources"]["memory"] == 2 * 1024**3 and "GPU" not in status["resources"]
        assert {"gcs_server", "raylet"} <= set(status["process_kinds"]) and status["processes"] >= 5

        # a job through the CLI, authenticated with the recorded token; it imports the shipped package
        assert main(["job", "submit", "check", "--state-file", str(state), "--follow"]) == 0
        out = capsys.readouterr().out
        report = printed_json(out)
        assert report["wanray_file"].startswith(cluster.temp_dir) and report["editable_checkout"] is None
        assert all(p.startswith(cluster.temp_dir) for p in report["subpackages"].values())
        assert "SUCCEEDED" in out

        # Ray's own clients reach it with the environment `wanray cluster env` prints
        assert main(["cluster", "env", "--state-file", str(state)]) == 0
        exports = dict(line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.splitlines())
        client = subprocess.run(
            [sys.executable, "-c", "import ray; ray.init(); print(ray.cluster_resources()['wanray_test'])"],
            capture_output=True, text=True, timeout=120, env={**os.environ, **exports},
        )
        assert client.returncode == 0, client.stderr[-2000:]
        assert float(client.stdout.split()[-1]) == custom
    finally:
        down = _wanray("cluster", "down", "--state-file", state)
        leftovers = session_pids(cluster.session_id)
        if leftovers:
            stop(cluster)  # backstop, so a failing test still cleans up
    assert down.returncode == 0, down.stdout + down.stderr
    assert not leftovers
    assert _processes_mentioning(cluster.temp_dir) == []
    assert not state.exists() and not Path(cluster.temp_dir).exists() and not Path(cluster.log_file).exists()
    check_port_free(dashboard_port, "dashboard")
    check_port_free(port, "GCS")

"""The recorded local cluster, its token, and `wanray cluster` argument handling, without starting Ray."""

import argparse
import os
import secrets
import socket
import stat

import pytest

from wanray.cli import main
from wanray.raycluster.cli import parse_bytes, parse_env, parse_resource
from wanray.raycluster.local import LocalCluster, _describe, start_head, write_new_token


def _cluster(tmp_path, **kw):
    fields = dict(address="127.0.0.1:6391", dashboard_url="http://127.0.0.1:8291", session_id=12345,
                  temp_dir=str(tmp_path / "ray"))
    return LocalCluster(**{**fields, **kw})


def test_state_round_trips_and_tolerates_older_or_newer_files(tmp_path):
    cluster = _cluster(tmp_path, auth="token", token_file=str(tmp_path / "t"), log_file="/x.log")
    path = tmp_path / "state" / "cluster.json"
    cluster.save(path)
    assert LocalCluster.load(path) == cluster
    path.write_text('{"address": "a:1", "dashboard_url": "http://a:2", "session_id": 7, "temp_dir": "/t", '
                    '"from_a_newer_version": true}')
    old = LocalCluster.load(path)
    assert (old.address, old.auth, old.token_file) == ("a:1", "disabled", None)


def test_token_reaches_clients_as_header_and_environment(tmp_path):
    token_file = tmp_path / "cluster.token"
    write_new_token(token_file)
    token = token_file.read_text()
    assert len(token) == 64 and stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    cluster = _cluster(tmp_path, auth="token", token_file=str(token_file))
    assert cluster.http_headers() == {"Authorization": f"Bearer {token}"}
    assert cluster.client_env() == {
        "RAY_ADDRESS": "127.0.0.1:6391", "RAY_API_SERVER_ADDRESS": "http://127.0.0.1:8291",
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
    }
    write_new_token(token_file)
    assert token_file.read_text() != token  # a fresh random token each time
    open_cluster = _cluster(tmp_path)
    assert open_cluster.http_headers() == {} and open_cluster.client_env()["RAY_AUTH_MODE"] == "disabled"


@pytest.mark.parametrize("kwargs,message", [
    ({"num_cpus": 0}, "num_cpus must be >= 1, got 0"),
    ({"num_cpus": 2, "num_gpus": -1}, "num_gpus must be >= 0, got -1"),
    ({"num_cpus": 2, "auth": "tokens"}, "auth must be one of ('token', 'disabled'), got 'tokens'"),
    ({"num_cpus": 2, "auth": "token"}, "auth='token' needs a token_file"),
    ({"num_cpus": 2, "resources": {"GPU": 1, "x": 1}}, "['GPU'] are not custom resources"),
    ({"num_cpus": 2, "resources": {"x": -1}}, "amounts must be numbers >= 0, got x=-1"),
    ({"num_cpus": 2, "work_dir": "/nonexistent/dir"}, "work_dir /nonexistent/dir is not a directory"),
])
def test_start_head_refuses_bad_settings_before_starting_anything(kwargs, message):
    with pytest.raises(ValueError) as e:
        start_head(**kwargs)
    assert message in str(e.value)


def test_a_taken_port_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ValueError, match=f"dashboard port {port} is already in use"):
            start_head(num_cpus=1, dashboard_port=port)


@pytest.mark.parametrize("text,expected", [("16GiB", 16 * 1024**3), ("512MiB", 512 * 1024**2), ("2G", 2 * 10**9),
                                           ("1.5GiB", int(1.5 * 1024**3)), ("1073741824", 1073741824), ("64kb", 64000)])
def test_sizes(text, expected):
    assert parse_bytes(text) == expected


def test_bad_sizes_resources_and_env_say_how_to_write_them():
    for parse, text, hint in ((parse_bytes, "lots", "16GiB"), (parse_resource, "H100", "NAME=AMOUNT"),
                              (parse_resource, "H100=-1", "NAME=AMOUNT"), (parse_env, "NOVALUE", "NAME=VALUE")):
        with pytest.raises(argparse.ArgumentTypeError, match=hint):
            parse(text)
    assert parse_resource("accelerator_type:H100=1") == ("accelerator_type:H100", 1.0)
    assert parse_env("A=b=c") == ("A", "b=c")


def test_status_down_and_env_without_a_cluster(tmp_path, capsys):
    state = str(tmp_path / f"{secrets.token_hex(4)}.json")
    assert main(["cluster", "status", "--state-file", state]) == 1
    assert "no cluster is up" in capsys.readouterr().out
    assert main(["cluster", "down", "--state-file", state]) == 0
    assert "nothing to stop" in capsys.readouterr().out
    assert main(["cluster", "env", "--state-file", state]) == 1
    assert "no cluster recorded" in capsys.readouterr().err


def test_status_of_a_cluster_whose_processes_are_gone(tmp_path, capsys):
    state = tmp_path / "cluster.json"
    _cluster(tmp_path, session_id=2**22 + 12345).save(state)  # no such process session
    assert main(["cluster", "status", "--state-file", str(state)]) == 1
    assert "is down (its processes are gone)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,name", [
    (["/opt/ray/core/src/ray/gcs/gcs_server", "--flag"], "gcs_server"),
    (["ray-dashboard-JobHead-0 (/venv/bin/python3 -c ...)"], "ray-dashboard-JobHead-0"),
    (["/venv/bin/python", "-u", "/venv/lib/ray/dashboard/dashboard.py", "--x"], "dashboard.py"),
    (["/venv/bin/python3", "-m", "wanray.training.train", "--preset", "p"], "python -m wanray.training.train"),
    (["ray::IDLE"], "ray::IDLE"),
])
def test_process_names(argv, name):
    assert _describe(argv) == name


def test_a_stale_record_whose_session_is_now_someone_elses_is_never_signalled(tmp_path, capsys):
    import subprocess

    # an unrelated program in its own session: what a recycled session id could name after a reboot
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (tmp_path / "ray").mkdir()
        (tmp_path / "ray" / "theirs.txt").write_text("not the cluster's")
        state = tmp_path / "cluster.json"
        _cluster(tmp_path, session_id=other.pid).save(state)
        assert main(["cluster", "status", "--json", "--state-file", str(state)]) == 1
        assert '"up": false' in capsys.readouterr().out
        assert main(["cluster", "down", "--state-file", str(state)]) == 0
        assert "no longer running; removed the stale record" in capsys.readouterr().out
        assert other.poll() is None and (tmp_path / "ray" / "theirs.txt").exists() and not state.exists()
    finally:
        other.kill()
        other.wait()


def test_ctrl_c_while_the_head_starts_leaves_nothing_running(tmp_path, monkeypatch):
    import wanray.raycluster.local as local

    fake_ray = tmp_path / "ray"
    fake_ray.write_text("#!/bin/sh\nexec sleep 300\n")  # stands in for `ray start --head --block`
    fake_ray.chmod(0o755)
    monkeypatch.setattr(local, "ray_executable", lambda: str(fake_ray))
    sessions = []

    def interrupted(cluster):  # the user presses Ctrl-C during the wait for the head node
        sessions.append(cluster.session_id)
        assert local.session_pids(cluster.session_id)  # the head's session is running
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "head_node_alive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        start_head(num_cpus=1, auth="disabled", port=0, dashboard_port=0, timeout_s=60, work_dir=str(tmp_path))
    assert sessions and local.session_pids(sessions[0]) == []
